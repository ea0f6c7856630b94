"""All tables come from ONE snapshot, even while the application keeps writing during the backup."""

import json
import threading

import psycopg
import pyarrow.parquet as pq

from supabackup_pipeline.core.catalog import TableRef
from supabackup_pipeline.core.database_backup import backup_database

TOTAL = 1_000_000


def test_concurrent_transfers_never_show_half_done(project_db_url, tmp_path):
    with psycopg.connect(project_db_url, autocommit=True) as db:
        db.execute("""
            CREATE TABLE public.checking (id int PRIMARY KEY, balance bigint NOT NULL);
            CREATE TABLE public.savings (id int PRIMARY KEY, balance bigint NOT NULL);
            INSERT INTO public.checking SELECT g, 10000 FROM generate_series(1, 50) g;
            INSERT INTO public.savings SELECT g, 10000 FROM generate_series(1, 50) g;
            -- dumped first (largest first), so the transfers run while the backup is under way
            CREATE TABLE public.filler AS SELECT g AS id, md5(g::text) AS h FROM generate_series(1, 400000) g;
        """)
    assert TOTAL == 100 * 10000
    stop = threading.Event()
    committed = []

    def transfers():
        with psycopg.connect(project_db_url, autocommit=True) as app:
            n = 0
            while not stop.is_set():
                n += 1
                with app.transaction():
                    app.execute("UPDATE public.checking SET balance = balance - 7 WHERE id = %s", (n % 50 + 1,))
                    app.execute("UPDATE public.savings SET balance = balance + 7 WHERE id = %s", ((n * 3) % 50 + 1,))
                committed.append(n)

    writer = threading.Thread(target=transfers)
    writer.start()
    try:
        while len(committed) < 20:  # the application is busy before the backup starts
            pass
        before = len(committed)
        result = backup_database(
            project_db_url, tmp_path, ["public"],
            tables={TableRef("public", t) for t in ("filler", "checking", "savings")},
            include_users=False, workers=1, log=lambda _: None,
        )
        during = len(committed) - before
    finally:
        stop.set()
        writer.join()
    assert during > 0, "no transfer committed while the backup ran: the test proved nothing"
    checking = pq.read_table(tmp_path / "database/public.checking.parquet").column("balance").to_pylist()
    savings = pq.read_table(tmp_path / "database/public.savings.parquet").column("balance").to_pylist()
    assert sum(checking) + sum(savings) == TOTAL
    assert sum(checking) < 500000, "the snapshot should include the transfers made before it"
    assert {t.ref.name for t in result.tables} == {"filler", "checking", "savings"}
    with psycopg.connect(project_db_url) as db:
        live = db.execute("SELECT (SELECT sum(balance) FROM public.checking)").fetchone()[0]
    assert live < sum(checking), "the live table moved on after the snapshot"
    sidecar = json.loads((tmp_path / "database/public.checking.json").read_text())
    assert sidecar["row_count"] == 50


def test_client_programs_skip_debians_perl_wrapper_and_honour_overrides(monkeypatch, tmp_path):
    import os
    import shutil
    import subprocess

    from supabackup_pipeline.core.snapshot import client_program

    for name in ("psql", "pg_dump"):
        monkeypatch.delenv(name.upper(), raising=False)
        on_path = shutil.which(name)
        chosen = client_program(name)
        if os.path.basename(os.path.realpath(on_path)) == "pg_wrapper":
            assert chosen.startswith("/usr/lib/postgresql/") and chosen.endswith(f"/bin/{name}")
        else:
            assert chosen == on_path
        assert subprocess.run([chosen, "--version"], capture_output=True, text=True, check=True).stdout
        monkeypatch.setenv(name.upper(), str(tmp_path / name))
        assert client_program(name) == str(tmp_path / name)
