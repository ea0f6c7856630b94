"""rollback_job end to end: damage a project in every way, roll back, compare with the moment of the backup."""

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import dagster as dg
import psycopg
import pytest

from supabackup_pipeline.operations import rollback, run_backup, show_backup

# Content of every table, column order ignored (a re-added column comes back last), row order ignored.
FINGERPRINT = """
SELECT c.relname, (SELECT md5(coalesce(string_agg(x, ',' ORDER BY x), '')) FROM (
    SELECT to_jsonb(t)::text AS x FROM {schema}.{table} t) s)
"""


def project_state(db_url: str, bucket_names: list[str], client) -> dict:
    with psycopg.connect(db_url) as db:
        tables = db.execute(
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relkind = 'r' AND (n.nspname = 'public' OR (n.nspname = 'auth' AND c.relname IN"
            " ('users', 'identities', 'mfa_factors'))) ORDER BY 1, 2").fetchall()
        content = {}
        for schema, table in tables:
            rows = db.execute(f'SELECT to_jsonb(t)::text FROM "{schema}"."{table}" t').fetchall()
            content[f"{schema}.{table}"] = sorted(r[0] for r in rows)
        columns = db.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns WHERE table_schema = 'public'"
            " ORDER BY 1, 2").fetchall()
        sequences = db.execute("SELECT sequencename, last_value FROM pg_sequences WHERE schemaname = 'public' ORDER BY 1").fetchall()
    objects = {}
    for bucket in bucket_names:
        try:
            info = client.get_bucket(bucket)
        except Exception:
            objects[bucket] = None
            continue
        settings = (info.public, info.file_size_limit, sorted(info.allowed_mime_types or []))
        listing = client.from_(bucket).list_v2({"limit": 1000})
        items = listing["objects"] if isinstance(listing, dict) else listing.objects
        names = sorted((o["name"] if isinstance(o, dict) else o.name) for o in items)
        objects[bucket] = (settings, {n: (client.from_(bucket).download(n),
                                         (client.from_(bucket).info(n) or {}).get("content_type")) for n in names})
    return {"content": content, "columns": columns, "sequences": sequences, "storage": objects}


@pytest.fixture
def project(backup_env, project_db_url, supabase_client, tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    suffix = uuid.uuid4().hex[:6]
    with psycopg.connect(project_db_url, autocommit=True) as db:
        db.execute("""
            DROP TABLE IF EXISTS public.order_items, public.orders, public.customers, public.audit, public.later, public.bulk CASCADE;
            DROP FUNCTION IF EXISTS public.audit_customer() CASCADE;
            DELETE FROM auth.users;
            CREATE TABLE public.customers (id serial PRIMARY KEY, name text NOT NULL, email text);
            CREATE TABLE public.orders (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                customer_id int NOT NULL REFERENCES public.customers(id), total numeric(10,2), note text);
            CREATE TABLE public.order_items (order_id bigint REFERENCES public.orders(id), sku text, qty int);
            CREATE TABLE public.audit (id serial PRIMARY KEY, what text);
            CREATE FUNCTION public.audit_customer() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN INSERT INTO public.audit (what) VALUES ('customer ' || NEW.id); RETURN NEW; END $$;
            CREATE TRIGGER customer_audit AFTER INSERT ON public.customers FOR EACH ROW EXECUTE FUNCTION public.audit_customer();
            INSERT INTO public.customers (name, email) SELECT 'c' || g, 'c' || g || '@x.io' FROM generate_series(1, 200) g;
            INSERT INTO public.orders (customer_id, total, note) SELECT 1 + g % 200, g * 1.5, 'n' || g FROM generate_series(1, 800) g;
            INSERT INTO public.order_items SELECT 1 + g % 800, 'sku' || g, g % 5 FROM generate_series(1, 1500) g;
            INSERT INTO auth.users (id, email, encrypted_password, raw_user_meta_data) VALUES
                ('11111111-1111-1111-1111-111111111111', 'ada@x.io', '$2a$10$ada', '{"n": 1}'),
                ('22222222-2222-2222-2222-222222222222', 'bob@x.io', '$2a$10$bob', '{"n": 2}');
            INSERT INTO auth.identities (provider_id, user_id, identity_data, provider) VALUES
                ('1', '11111111-1111-1111-1111-111111111111', '{"email": "ada@x.io"}', 'email'),
                ('2', '22222222-2222-2222-2222-222222222222', '{"email": "bob@x.io"}', 'email');
        """)
    storage = supabase_client.storage
    docs, media = f"docs-{suffix}", f"media-{suffix}"
    storage.create_bucket(docs, options={"public": False})
    storage.create_bucket(media, options={"public": True, "allowed_mime_types": ["image/png", "text/plain"]})
    storage.from_(docs).upload("a/readme.txt", b"read me", {"content-type": "text/plain"})
    storage.from_(docs).upload("a/b/data.json", b'{"k": 1}', {"content-type": "application/json"})
    storage.from_(docs).upload("keep me.txt", b"same", {"content-type": "text/plain"})
    storage.from_(media).upload("logo.png", os.urandom(3000), {"content-type": "image/png"})
    yield {"db": project_db_url, "storage": storage, "buckets": [docs, media]}
    for bucket in (docs, media):
        try:
            storage.empty_bucket(bucket)
            storage.delete_bucket(bucket)
        except Exception:
            pass


def damage_everything(p):
    with psycopg.connect(p["db"], autocommit=True) as db:
        db.execute("""
            DELETE FROM public.order_items WHERE qty = 0;
            UPDATE public.orders SET total = 0 WHERE id % 3 = 0;
            DROP TABLE public.order_items;
            ALTER TABLE public.orders ADD COLUMN added_later int DEFAULT 7;
            ALTER TABLE public.orders DROP COLUMN note;
            ALTER TABLE public.customers ALTER COLUMN email TYPE varchar(100);
            INSERT INTO public.customers (name) VALUES ('new customer');
            CREATE TABLE public.later (id int);
            SELECT setval('public.customers_id_seq', 5000);
            DELETE FROM auth.users WHERE email = 'bob@x.io';
            UPDATE auth.users SET encrypted_password = '$2a$10$stolen' WHERE email = 'ada@x.io';
            INSERT INTO auth.users (id, email) VALUES (gen_random_uuid(), 'intruder@x.io');
        """)
    storage = p["storage"]
    docs, media = p["buckets"]
    storage.from_(docs).remove(["a/readme.txt"])
    storage.from_(docs).update("a/b/data.json", b'{"k": "overwritten"}', {"content-type": "application/json"})
    storage.from_(docs).upload("added.txt", b"new", {"content-type": "text/plain"})
    storage.from_(docs).update("keep me.txt", b"same", {"content-type": "application/octet-stream"})
    storage.update_bucket(docs, {"public": True})
    storage.empty_bucket(media)
    storage.delete_bucket(media)


def test_rollback_brings_tables_users_sequences_and_storage_back(project):
    backup = run_backup(description="before damage")
    assert backup["status"] == "valid", backup
    at_backup = project_state(project["db"], project["buckets"], project["storage"])

    damage_everything(project)
    damaged = project_state(project["db"], project["buckets"], project["storage"])
    assert damaged != at_backup

    # a dry run changes nothing and says what would happen
    plan = rollback(backup["backup_id"], {"dry_run": True})
    assert plan["status"] == "planned"
    tables = {t["table"]: t for t in plan["plan"]["database"]["tables"]}
    assert tables["public.order_items"]["exists"] is False
    assert any("added_later" in d for d in tables["public.orders"]["drift"])
    assert plan["plan"]["database"]["new_tables"] == ["public.later"]
    assert project_state(project["db"], project["buckets"], project["storage"]) == damaged

    report = rollback(backup["backup_id"], {})
    assert report["status"] == "restored", report
    # every restored table, drifted and recreated ones included, reads back as the dump read it
    assert {t["validated_by"] for t in report["database"]["tables"]} == {"copy_sha256"}
    after = project_state(project["db"], project["buckets"], project["storage"])
    # public.later was created after the backup: left alone by default (and listed in the plan)
    assert after["content"].pop("public.later") == []
    after["columns"] = [c for c in after["columns"] if c[0] != "later"]
    # equal includes public.audit: the customer trigger did not fire on restored rows
    assert after == at_backup

    # the safety backup holds the damaged state, so the rollback can be undone
    safety = show_backup(report["safety_backup"])
    assert safety["status"] == "valid" and safety["description"] == f"pre-rollback of {backup['backup_id']}"
    assert {t["table"]: t["rows"] for t in safety["tables"]}["public.customers"] == 201
    # ... and it is a run of the code location's backup_job (on its Runs page), tagged as a safety backup
    (safety_run,) = dg.DagsterInstance.get().get_runs(
        filters=dg.RunsFilter(tags={"dagster/partition": report["safety_backup"]}))
    assert safety_run.job_name == "backup_job" and safety_run.remote_job_origin is not None
    assert safety_run.tags["supabackup/pre_rollback_of"] == backup["backup_id"]
    history = show_backup(backup["backup_id"])["rollbacks"]
    assert [h["status"] for h in history] == ["planned", "restored"]
    listed = json.loads(_cli(["rollbacks", "--json"]).stdout)
    assert [(r["backup_id"], r["status"]) for r in listed][:2] == [(backup["backup_id"], "restored"),
                                                                   (backup["backup_id"], "planned")]
    assert set(history[-1]["steps"]) >= {"prevalidate_and_plan", "safety_backup", "database", "storage"}


def _cli(args, env=None, **kwargs):
    return subprocess.run([sys.executable, "-m", "supabackup_pipeline", *args], env={**os.environ, **(env or {})},
                          capture_output=True, text=True, timeout=300, **kwargs)


def test_refusals_leave_the_project_untouched(project, backup_env, stack):
    backup = run_backup(components=["database", "users"])
    assert backup["status"] == "valid"
    with psycopg.connect(project["db"], autocommit=True) as db:
        db.execute("DELETE FROM public.order_items")
    before = project_state(project["db"], [], project["storage"])

    assert _cli(["rollback", "20990101T000000Z", "--yes"]).returncode == 2
    assert _cli(["rollback", "../etc", "--yes"]).returncode == 2
    done = _cli(["rollback", backup["backup_id"]], stdin=subprocess.DEVNULL)  # no terminal, no --yes
    assert done.returncode == 2 and "--yes" in done.stderr

    # restoring customers alone would empty orders (they reference it): refused, naming it
    done = _cli(["rollback", backup["backup_id"], "--yes", "--components", "database", "--tables", "public.customers",
                 "--no-safety-backup"])
    assert done.returncode == 2 and "public.orders" in done.stderr + done.stdout  # a refused plan

    # a backup of another project needs --allow-other-project
    from supabackup_pipeline.dev.stack import create_project_database

    other = create_project_database(stack.superuser_url, f"other_{uuid.uuid4().hex[:6]}")
    done = _cli(["rollback", backup["backup_id"], "--yes", "--components", "database,users", "--no-safety-backup"],
                {"SUPABASE_DB_URL": other})
    assert done.returncode == 2 and "another project" in done.stderr + done.stdout  # a refused plan

    # a corrupted backup is refused before anything is touched
    root = backup["path"]
    parquet = os.path.join(root, "database", "public.orders.parquet")
    data = bytearray(open(parquet, "rb").read())
    data[100] ^= 0xFF
    open(parquet, "wb").write(bytes(data))
    done = _cli(["rollback", backup["backup_id"], "--yes", "--components", "database,users", "--no-safety-backup"])
    assert done.returncode == 2 and "does not verify" in done.stderr + done.stdout  # a refused plan
    assert project_state(project["db"], [], project["storage"]) == before


def test_a_second_rollback_or_backup_at_the_same_time_is_refused(project):
    backup = run_backup(components=["database", "users"])
    from supabackup_pipeline.core.project_lock import ADVISORY_LOCK_KEY

    with psycopg.connect(project["db"]) as holder:
        holder.execute("SELECT pg_advisory_xact_lock(%s)", (ADVISORY_LOCK_KEY,))
        report = rollback(backup["backup_id"], {"components": ["database", "users"], "safety_backup": False})
        assert report["status"] == "failed" and "another supabackup backup or rollback is running" in report["error"]
        second = run_backup(components=["database"])
        assert second["status"] == "failed" and "another supabackup backup or rollback" in second["error"]


def test_kill_9_during_the_database_phase_changes_nothing(project, backup_env):
    with psycopg.connect(project["db"], autocommit=True) as db:
        db.execute("CREATE TABLE public.bulk AS SELECT g AS id, repeat(md5(g::text), 6) AS payload FROM generate_series(1, 1500000) g")
    backup = run_backup(components=["database", "users"])
    assert backup["status"] == "valid"
    with psycopg.connect(project["db"], autocommit=True) as db:
        db.execute("DELETE FROM public.bulk WHERE id % 2 = 0; UPDATE auth.users SET email = 'changed@x.io' WHERE email = 'ada@x.io'")
    before = project_state(project["db"], [], project["storage"])
    env = {**os.environ, **backup_env, "DAGSTER_HOME": os.environ["DAGSTER_HOME"]}
    proc = subprocess.Popen(
        [sys.executable, "-m", "supabackup_pipeline", "rollback", backup["backup_id"], "--yes",
         "--components", "database,users", "--no-safety-backup"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        with psycopg.connect(project["db"], autocommit=True) as watch:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                loading = watch.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'supabackup'"
                                        " AND query ILIKE 'COPY %%bulk%% FROM STDIN%%'").fetchone()[0]
                if loading or proc.poll() is not None:
                    break
                time.sleep(0.02)
            assert proc.poll() is None, "the rollback finished before it could be killed"
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            # the server notices the dropped connection and rolls the transaction back
            deadline = time.monotonic() + 30
            while watch.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'supabackup'").fetchone()[0]:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert project_state(project["db"], [], project["storage"]) == before
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        with psycopg.connect(project["db"], autocommit=True) as db:
            db.execute("DROP TABLE IF EXISTS public.bulk")


def test_postgres_restarted_mid_restore_changes_nothing(tmp_path):
    """Its own cluster: restarting the session's shared one would disturb the other tests."""
    import threading

    from supabackup_pipeline.core.database_backup import as_manifest, backup_database
    from supabackup_pipeline.core.db_restore import apply_database_restore, plan_database_restore
    from supabackup_pipeline.core.snapshot import connect
    from supabackup_pipeline.dev.stack import create_database

    info = create_database(tmp_path / "own")
    try:
        with psycopg.connect(info.db_url, autocommit=True) as db:
            db.execute("CREATE TABLE public.big AS SELECT g AS id, repeat(md5(g::text), 6) AS payload"
                       " FROM generate_series(1, 1500000) g")
        result = backup_database(info.db_url, tmp_path / "backup", ["public"], log=lambda _: None)
        manifest = as_manifest(result, ["public"])
        with psycopg.connect(info.db_url, autocommit=True) as db:
            db.execute("DELETE FROM public.big WHERE id > 1000")
        with connect(info.db_url) as conn:
            plan = plan_database_restore(conn, tmp_path / "backup", manifest, ["database"])
        errors = []
        worker = threading.Thread(target=lambda: _capture(errors, apply_database_restore, info.db_url, plan,
                                                          tmp_path / "backup", log=lambda _: None))
        worker.start()
        with psycopg.connect(info.db_url, autocommit=True) as watch:
            deadline = time.monotonic() + 60
            while not watch.execute("SELECT count(*) FROM pg_stat_activity WHERE query ILIKE 'COPY %%FROM STDIN%%'"
                                    " AND application_name = 'supabackup'").fetchone()[0]:
                assert time.monotonic() < deadline and worker.is_alive()
                time.sleep(0.02)
        info.cluster.stop(mode="immediate")
        info.cluster.start()
        worker.join(60)
        assert errors, "the restore should have failed when the server went away"
        with psycopg.connect(info.db_url) as db:
            assert db.execute("SELECT count(*), max(id) FROM public.big").fetchone() == (1000, 1000)
    finally:
        info.cluster.destroy()


def _capture(errors, fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - the test inspects it
        errors.append(exc)


def test_storage_503s_during_a_rollback_are_retried_and_a_lasting_outage_is_finished_by_a_rerun(
        project, storage_faults):
    backup = run_backup(description="before damage")
    assert backup["status"] == "valid", backup
    at_backup = project_state(project["db"], project["buckets"], project["storage"])
    damage_everything(project)
    docs, media = project["buckets"]

    def state_without_later_table() -> dict:  # created after the backup: left alone by a rollback
        state = project_state(project["db"], project["buckets"], project["storage"])
        assert state["content"].pop("public.later") == []
        state["columns"] = [c for c in state["columns"] if c[0] != "later"]
        return state

    # transient: every kind of write fails twice first (uploads, deletes, bucket create/update)
    for method, path in [("POST", rf"^/object/{docs}/"), ("POST", rf"^/object/{media}/"),
                         ("DELETE", rf"^/object/{docs}"), ("POST", r"^/bucket"), ("PUT", rf"^/bucket/{docs}")]:
        storage_faults.fail_next(method, path, 503, times=2)
    report = rollback(backup["backup_id"], {"safety_backup": False})
    assert report["status"] == "restored", report
    assert storage_faults.pending() == []  # every one of them was hit, and retried
    assert state_without_later_table() == at_backup

    # lasting: the run fails, naming the Storage error; once Storage is back a rerun completes
    project["storage"].from_(docs).remove(["a/readme.txt"])
    project["storage"].from_(docs).upload("added.txt", b"new", {"content-type": "text/plain"})
    storage_faults.fail_next("POST", rf"^/object/{docs}/", 503, times=1000)
    failed = rollback(backup["backup_id"], {"safety_backup": False})
    assert failed["status"] == "failed" and "503" in failed["error"], failed
    storage_faults.reset()
    report = rollback(backup["backup_id"], {"safety_backup": False})
    assert report["status"] == "restored", report
    assert state_without_later_table() == at_backup


def test_the_backup_a_rollback_reads_is_neither_deleted_nor_pruned_until_it_ends(project, monkeypatch):
    """The rollback's own safety backup sets off the retention policy, which a newer backup could
    make forget the one being restored; `delete` could be run meanwhile too. Either would leave the
    database restored and the storage restore without files. Both are refused while it runs."""
    from supabackup_pipeline.core.in_use import in_use
    from supabackup_pipeline.core.retention import RetentionPolicy, delete_backup_files, plan_retention
    from supabackup_pipeline.core.store import BackupStore
    from supabackup_pipeline.jobs import rollback as rollback_jobs

    older = run_backup(description="the one to go back to")["backup_id"]
    run_backup(description="a newer one")
    store = BackupStore(Path(os.environ["BACKUP_PATH"]))
    seen = {}
    take = rollback_jobs.take_safety_backup

    def safety_backup_then_cleanup(*args, **kwargs):
        safety_id = take(*args, **kwargs)
        kept, forget = plan_retention(store, RetentionPolicy(keep_last=2, keep_daily=0, keep_weekly=0, keep_monthly=0))
        seen["prune"] = (kept.get(older), forget.get(older))
        try:
            delete_backup_files(store, older, force=True)
        except Exception as exc:
            seen["delete"] = str(exc)
        return safety_id

    monkeypatch.setattr(rollback_jobs, "take_safety_backup", safety_backup_then_cleanup)
    damage_everything(project)
    report = rollback(older, {})

    assert report["status"] == "restored", report
    assert seen["prune"] == (["read by a running rollback"], None)
    assert seen["delete"] == (f"{older} is being restored by a running rollback: it is not deleted (not even with"
                              " --force); delete it after the rollback ends")
    assert store.exists(older) and not in_use(store, older)
    kept, forget = plan_retention(store, RetentionPolicy(keep_last=2, keep_daily=0, keep_weekly=0, keep_monthly=0))
    assert older in forget  # once the rollback is over, the policy applies again


def test_a_storage_rollback_against_another_projects_url_is_refused_and_deletes_nothing(project, backup_env):
    """SUPABASE_URL of another project (staging's, with production's backups) would have the rollback
    empty that project's buckets of the same names: it is refused, unless --allow-other-project."""
    backup = run_backup(components=["storage"])
    assert backup["status"] == "valid"
    docs = project["buckets"][0]
    project["storage"].from_(docs).upload("only-live.txt", b"not in the backup", {"content-type": "text/plain"})
    before = project_state(project["db"], project["buckets"], project["storage"])
    elsewhere = backup_env["SUPABASE_URL"].replace("127.0.0.1", "localhost")  # another URL: another project, for all we know

    done = _cli(["rollback", backup["backup_id"], "--yes", "--components", "storage", "--no-safety-backup"],
                {"SUPABASE_URL": elsewhere})
    assert done.returncode == 2, done.stdout + done.stderr
    assert (f"Storage was taken from {backup_env['SUPABASE_URL']}, and SUPABASE_URL is {elsewhere}: restoring it would"
            " delete that project's objects") in done.stdout + done.stderr
    assert project_state(project["db"], project["buckets"], project["storage"]) == before

    done = _cli(["rollback", backup["backup_id"], "--yes", "--components", "storage", "--no-safety-backup",
                 "--allow-other-project"], {"SUPABASE_URL": elsewhere})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "only-live.txt" not in {o["name"] for o in project["storage"].from_(docs).list("")}


def test_a_rollback_stopped_in_its_storage_phase_says_the_database_is_restored(project, backup_env, monkeypatch):
    """Ctrl-C (or an outage) after the database committed: "interrupted" alone let users think
    nothing had changed. The rollback says what is done and that running it again finishes it."""
    from supabackup_pipeline.core import storage_restore
    from supabackup_pipeline.core.rollback import RollbackOptions, run_rollback
    from supabackup_pipeline.core.storage_api import StorageApi
    from supabackup_pipeline.core.store import BackupStore

    backup = run_backup(description="before")
    damage_everything(project)

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(storage_restore, "apply_storage_restore", stopped)
    said: list[str] = []
    with StorageApi(backup_env["SUPABASE_URL"], backup_env["SUPABASE_SERVICE_ROLE_KEY"]) as api:
        with pytest.raises(KeyboardInterrupt):
            run_rollback(BackupStore(Path(os.environ["BACKUP_PATH"])), backup["backup_id"], project["db"], api,
                         RollbackOptions(safety_backup=False), log=said.append)
    assert said[-1].startswith("the database is restored and committed, Storage only in part: run the same rollback")
