"""Integrity: verification catches every kind of damage, names the file, and never passes a bad backup."""

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import dagster as dg
import psycopg
import pytest

from supabackup_pipeline.assets.keys import MANIFEST_KEY, table_key
from supabackup_pipeline.core.store import BackupStore
from supabackup_pipeline.core.storage_mirror import previous_storage
from supabackup_pipeline.core.verify import manifest_checksum, verify_backup
from supabackup_pipeline.definitions import build_definitions
from supabackup_pipeline.operations import run_backup
from supabackup_pipeline.partitions import BACKUP_PARTITIONS_NAME


@pytest.fixture(scope="module")
def made_backup(tmp_path_factory, stack_env, project_db_url, stack):
    """One complete backup (tables, users, a bucket); tests damage copies of it."""
    from supabase import create_client

    with psycopg.connect(project_db_url, autocommit=True) as db:
        db.execute("""
            CREATE TABLE public.items (id int PRIMARY KEY, name text);
            INSERT INTO public.items SELECT g, 'item ' || g FROM generate_series(1, 300) g;
            CREATE TABLE public.notes (id int PRIMARY KEY, body text);
            INSERT INTO public.notes VALUES (1, 'a'), (2, 'b');
            INSERT INTO auth.users (id, email, encrypted_password) VALUES (gen_random_uuid(), 'v@example.com', '$2a$10$x');
        """)
    client = create_client(stack_env["SUPABASE_URL"], stack_env["SUPABASE_SERVICE_ROLE_KEY"])
    bucket = f"verify-{uuid.uuid4().hex[:8]}"
    client.storage.create_bucket(bucket)
    client.storage.from_(bucket).upload("folder/photo.bin", os.urandom(20_000))
    base = tmp_path_factory.mktemp("verify")
    env = {**stack_env, "SUPABASE_DB_URL": project_db_url, "BACKUP_PATH": str(base / "backups"),
           "DAGSTER_HOME": str(base / "home")}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        result = run_backup(description="to be damaged")
    client.storage.empty_bucket(bucket)
    client.storage.delete_bucket(bucket)
    assert result["status"] == "valid", result
    return Path(result["path"]), bucket, env


@pytest.fixture
def copy(made_backup, tmp_path):
    root, bucket, _ = made_backup
    target = tmp_path / root.name
    shutil.copytree(root, target)
    return target, bucket


def _targets(root: Path, bucket: str) -> dict[str, str]:
    storage_file = next(p for p in (root / "storage").rglob("*.bin"))
    return {
        "table parquet": "database/public.items.parquet",
        "sidecar json": "database/public.items.json",
        "users parquet": "users/auth.users.parquet",
        "storage file": str(storage_file.relative_to(root)),
        "manifest": "metadata.json",
    }


def flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def delete(path: Path) -> None:
    path.unlink()


def add_stray(path: Path) -> None:
    (path.parent / ("stray-" + path.name)).write_bytes(b"not part of the backup")


KINDS = ["table parquet", "sidecar json", "users parquet", "storage file", "manifest"]


def test_an_untouched_backup_verifies(copy):
    root, _ = copy
    report = verify_backup(root)
    assert report.valid and report.problems == []
    assert report.files_checked == len(json.loads((root / "metadata.json").read_text())["files"])
    assert report.bytes_read > 0


@pytest.mark.parametrize("damage", [flip, truncate, delete, add_stray], ids=lambda f: f.__name__)
@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_of_damage_is_found_and_named(copy, kind, damage):
    root, bucket = copy
    rel = _targets(root, bucket)[kind]
    damage(root / rel)
    report = verify_backup(root)
    assert not report.valid
    named = {p.file for p in report.problems}
    expected = str(Path(rel).parent / ("stray-" + Path(rel).name)) if damage is add_stray else rel
    if damage is add_stray:
        expected = expected.removeprefix("./")
    assert expected in named, report.problems


def test_a_manifest_edited_consistently_is_still_caught(copy):
    """Someone 'fixes' a checksum in metadata.json to match a tampered file: the seal catches it."""
    root, _ = copy
    rel = "database/public.notes.parquet"
    flip(root / rel)
    manifest = json.loads((root / "metadata.json").read_text())
    import hashlib

    manifest["files"][rel]["sha256"] = hashlib.sha256((root / rel).read_bytes()).hexdigest()
    (root / "metadata.json").write_text(json.dumps(manifest))
    problems = {p.file: p.problem for p in verify_backup(root).problems}
    assert "metadata.json" in problems and "edited after it was written" in problems["metadata.json"]
    assert manifest_checksum(manifest) != (root / "metadata.json.sha256").read_text().strip()


def test_quick_checks_presence_and_sizes_only(copy):
    root, _ = copy
    flip(root / "database/public.items.parquet")  # same size: only a full check sees it
    quick = verify_backup(root, quick=True)
    assert quick.status == "sizes_ok" and quick.valid is None  # never "valid": the content was not read
    assert not verify_backup(root).valid
    truncate(root / "database/public.notes.parquet")
    quick = verify_backup(root, quick=True)
    assert not quick.valid and {p.file for p in quick.problems} == {"database/public.notes.parquet"}


def _cli(args, env):
    return subprocess.run([sys.executable, "-m", "supabackup_pipeline", *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=240)


def test_verify_command_exit_codes_and_recorded_result(made_backup, tmp_path):
    root, _, env = made_backup
    backups = tmp_path / "backups"
    shutil.copytree(root, backups / root.name)
    env = {**env, "BACKUP_PATH": str(backups)}
    done = _cli(["verify", root.name, "--json"], env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["valid"] is True
    shown = json.loads(_cli(["show", root.name, "--json"], env).stdout)
    assert shown["last_verification"]["valid"] is True

    flip(backups / root.name / "database/public.items.parquet")
    done = _cli(["verify", root.name], env)
    assert done.returncode == 1
    assert "NOT VALID" in done.stdout and "database/public.items.parquet" in done.stdout
    listed = json.loads(_cli(["list", "--json"], env).stdout)
    assert [b["last_verify_valid"] for b in listed if b["backup_id"] == root.name] == [False]

    assert _cli(["verify", "20990101T000000Z"], env).returncode == 2
    assert _cli(["verify", "../x"], env).returncode == 2


def test_blocking_check_fails_the_run_when_a_file_is_corrupted_before_it_is_checked(made_backup, tmp_path):
    _, _, env = made_backup
    store = BackupStore(tmp_path / "backups")
    # the tables as the code location sees them (cached by the module's first backup)
    shutil.copytree(Path(env["BACKUP_PATH"]) / ".state", store.state_dir)
    items, notes = table_key("public", "items"), table_key("public", "notes")
    dumps_only = dg.define_asset_job("dumps_only", selection=dg.AssetSelection.groups("tables", "auth").without_checks())
    checks_then_manifest = dg.define_asset_job(
        "checks_then_manifest",
        selection=dg.AssetSelection.checks(*(dg.AssetCheckKey(k, "integrity") for k in (items, notes)))
        | dg.AssetSelection.assets(MANIFEST_KEY).without_checks(),
    )
    defs = dg.Definitions.merge(build_definitions(str(store.root)), dg.Definitions(jobs=[dumps_only, checks_then_manifest]))
    backup_id = "20260101T000000Z"
    with dg.instance_for_test() as instance, pytest.MonkeyPatch.context() as mp:
        for k, v in {**env, "BACKUP_PATH": str(store.root)}.items():
            mp.setenv(k, v)
        instance.add_dynamic_partitions(BACKUP_PARTITIONS_NAME, [backup_id])
        first = defs.resolve_job_def("dumps_only").execute_in_process(instance=instance, partition_key=backup_id)
        assert first.success and not first.get_asset_check_evaluations()
        flip(store.staging(backup_id) / "database/public.items.parquet")  # damage between write and check

        second = defs.resolve_job_def("checks_then_manifest").execute_in_process(
            instance=instance, partition_key=backup_id, raise_on_error=False)
        assert not second.success
        evaluations = {e.asset_key: e.passed for e in second.get_asset_check_evaluations()}
        assert evaluations == {items: False, notes: True}  # one bad table does not hide the good one
        assert not second.get_asset_materialization_events()  # the manifest step never ran
    manifest = store.manifest(backup_id)  # published, so nothing is lost, but marked invalid
    assert manifest["status"] == "invalid"
    failed = [k for k, o in manifest["checks"]["assets"].items() if not o["passed"]]
    assert failed == [items.to_user_string()]
    assert previous_storage(store) is None  # never the base of an incremental backup


def test_verify_streams_a_large_backup_in_flat_memory(tmp_path):
    """1 GB of data verifies with a small, constant memory footprint (read in 1 MiB chunks)."""
    import hashlib

    root = tmp_path / "20260101T000000Z"
    (root / "storage/b").mkdir(parents=True)
    big = root / "storage/b/big.bin"
    chunk = os.urandom(1 << 20)
    digest = hashlib.sha256()
    with open(big, "wb") as f:
        for _ in range(1024):
            f.write(chunk)
            digest.update(chunk)
    from supabackup_pipeline.core.verify import seal_manifest

    seal_manifest(root, {"backup_id": root.name, "files": {"storage/b/big.bin": {"bytes": 1 << 30, "sha256": digest.hexdigest()}}})
    # VmHWM, not ru_maxrss: after fork+exec, ru_maxrss also reports the (large) pytest parent
    code = ("import re; from pathlib import Path; from supabackup_pipeline.core.verify import verify_backup;"
            f"r = verify_backup(Path({str(root)!r})); "
            "hwm = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1);"
            "print(r.valid, r.bytes_read, hwm)")
    valid, read, rss_kb = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                         check=True).stdout.split()
    assert valid == "True" and int(read) == 1 << 30
    assert int(rss_kb) < 250 * 1024, f"peak RSS {int(rss_kb) // 1024} MB while verifying 1 GB"
