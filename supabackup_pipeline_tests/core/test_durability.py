"""A backup's files are on disk before the backup vouches for them (its manifest comes after
`backup_database` returns), although their fsyncs run on a thread of their own."""

import os

import psycopg
import pytest

from supabackup_pipeline.core import files
from supabackup_pipeline.core.database_backup import backup_database


def test_every_file_and_folder_of_a_backup_is_fsynced_before_backup_database_returns(project_db_url, tmp_path,
                                                                                     monkeypatch):
    with psycopg.connect(project_db_url, autocommit=True) as db:
        db.execute("CREATE TABLE public.durable (id int PRIMARY KEY, note text);"
                   " INSERT INTO public.durable SELECT g, md5(g::text) FROM generate_series(1, 5000) g;"
                   " CREATE TABLE public.durable_too AS SELECT g AS id FROM generate_series(1, 10) g")
    synced: set[int] = set()  # inode numbers
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        real_fsync(fd)
        synced.add(os.fstat(fd).st_ino)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    result = backup_database(project_db_url, tmp_path, ["public"], include_users=True, workers=2, log=lambda _: None)
    written = {tmp_path / relative for relative in result.files}
    assert {p.name for p in written} >= {"public.durable.parquet", "public.durable.json", "auth.users.parquet"}
    not_synced = sorted(str(p.relative_to(tmp_path)) for p in written if p.stat().st_ino not in synced)
    assert not_synced == []
    assert (tmp_path / "database").stat().st_ino in synced and (tmp_path / "users").stat().st_ino in synced
    assert not list(tmp_path.rglob("*.tmp"))


def test_a_failed_fsync_surfaces_when_the_files_are_waited_for(tmp_path):
    """A disk that fails (here: a file gone before its fsync) is reported, not dropped."""
    sync = files.BackgroundSync()
    kept = tmp_path / "kept.bin"
    kept.write_bytes(b"x")
    sync.submit(kept)
    sync.submit(tmp_path / "gone.bin")
    with pytest.raises(FileNotFoundError):
        sync.wait()
    sync.wait()  # reported once; nothing left pending
    with pytest.raises(FileNotFoundError):
        with files.BackgroundSync() as failing:
            failing.submit(tmp_path / "gone too.bin")
