"""The command line as users meet it: quiet output, honest status, exit codes, nothing left behind."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import psycopg
import pytest

from processes import start_group, stop_group
from supabackup_pipeline.code_location import location_origin
from supabackup_pipeline.console import render_database_plan
from supabackup_pipeline.core.content_check import TableProbe, content_changes, probes_from_plan
from supabackup_pipeline.core.store import BackupStore
from supabackup_pipeline.core.verify import verify_backup
from supabackup_pipeline.definitions import build_definitions
from supabackup_pipeline.dev.stack import service_role_key
from supabackup_pipeline.jobs.retention import discard_canceled_backup, discard_failed_backup
from supabackup_pipeline.operations import run_backup
from supabackup_pipeline.partitions import BACKUP_PARTITIONS_NAME
from supabackup_pipeline.resources import BackupStorage

UNSET = ("SUPABASE_DB_URL", "SUPABASE_URL", "SUPABASE_SERVICE_ROLE_KEY")


@pytest.fixture(scope="module")
def seeded(project_db_url):
    with psycopg.connect(project_db_url, autocommit=True) as db:
        db.execute("""
            CREATE TABLE public.items (id int PRIMARY KEY, name text NOT NULL);
            CREATE TABLE public.notes (id int PRIMARY KEY, body text);
            INSERT INTO public.items SELECT g, 'item ' || g FROM generate_series(1, 50) g;
            INSERT INTO public.notes SELECT g, 'note ' || g FROM generate_series(1, 20) g;
        """)
    return project_db_url


@pytest.fixture
def env(backup_env, seeded, tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    Path(backup_env["BACKUP_PATH"]).mkdir(parents=True)
    return {**backup_env, "DAGSTER_HOME": str(tmp_path / "home")}


def cli(args: list[str], env: dict, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "supabackup_pipeline", *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL, **kwargs)


def partitions(env: dict) -> list[str]:
    instance = dg.DagsterInstance.from_config(env["DAGSTER_HOME"])
    try:
        return list(instance.get_dynamic_partitions(BACKUP_PARTITIONS_NAME))
    finally:
        instance.dispose()


def nothing_staged(store: BackupStore) -> bool:
    return not store.staging_root.exists() or not any(store.staging_root.iterdir())


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("error:")]


def flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


# ------------------------------------------------------------------ failed / interrupted runs
def test_a_failed_backup_leaves_nothing_behind_and_names_the_setting_at_fault(env):
    bad = {**env, "SUPABASE_SERVICE_ROLE_KEY": service_role_key("not-this-stacks-secret-" * 2)}
    done = cli(["backup", "--components", "database,storage"], bad)
    assert done.returncode == 1
    errors = error_lines(done.stderr)
    assert len(errors) == 1 and "SUPABASE_SERVICE_ROLE_KEY" in errors[0], done.stderr
    assert "Traceback" not in done.stderr and " - DEBUG - " not in done.stderr + done.stdout
    assert "▸ database_dump" in done.stderr and "▸ storage_mirror" in done.stderr  # one line per phase
    store = BackupStore(Path(env["BACKUP_PATH"]))
    assert store.backup_ids() == [] and nothing_staged(store)  # the tables it had dumped are gone too
    assert partitions(env) == []

    verbose = cli(["backup", "--components", "storage", "--verbose"], bad)
    assert verbose.returncode == 1 and "STEP_FAILURE" in verbose.stdout + verbose.stderr
    assert nothing_staged(store) and partitions(env) == []


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MB file system (tmpfs) to hold BACKUP_PATH: a disk that fills up. Mounting needs root, as
    the tests run in CI: there a failed mount fails the test; a developer's run as another user skips
    it, saying why."""
    if os.geteuid() != 0:
        pytest.skip("mounting a 4 MB tmpfs to fill up needs root (CI runs the tests as root)")
    mount = tmp_path / "small-disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    assert done.returncode == 0, f"cannot mount a 4 MB tmpfs as root: {done.stderr.strip()}"
    try:
        yield mount
    finally:
        subprocess.run(["umount", "--lazy", str(mount)], check=True)


RANDOM_MB = ("SELECT g AS id, decode(string_agg(lpad(to_hex((random() * 4294967295)::int8), 8, '0'), ''), 'hex') AS data"
             " FROM generate_series(1, {count}) g, generate_series(1, 262144) w GROUP BY g")  # 1 MB per row, incompressible


def test_a_full_disk_fails_the_backup_by_name_stops_the_rollback_and_keeps_the_earlier_backup(env, seeded, small_disk, new_bucket, storage):
    env = {**env, "BACKUP_PATH": str(small_disk / "backups")}
    store = BackupStore(small_disk / "backups")
    first = cli(["backup", "--components", "database,users", "--json"], env)
    assert first.returncode == 0, first.stderr
    kept = json.loads(first.stdout)["backup_id"]
    bucket = new_bucket()
    storage.from_(bucket).upload("big/blob.bin", os.urandom(6 << 20))
    with psycopg.connect(seeded, autocommit=True) as db:
        db.execute(f"CREATE TABLE public.blobs AS {RANDOM_MB.format(count=6)}")
    try:
        for components in ("database,users", "storage"):  # Parquet writes, then the mirror's downloads
            done = cli(["backup", "--components", components], env)
            assert done.returncode == 1, done.stderr
            errors = error_lines(done.stderr)
            assert len(errors) == 1, done.stderr
            assert f"no space left on the disk holding BACKUP_PATH ({store.root}, a disk of 4 MB)" in errors[0], errors
            assert "Errno" not in errors[0] and "Traceback" not in done.stderr
            assert store.backup_ids() == [kept] and nothing_staged(store)  # the failed one's files are gone
            assert partitions(env) == [kept]
        # a rollback's safety backup of the live project (its 6 MB table) does not fit either: the
        # rollback stops before touching anything
        done = cli(["rollback", kept, "--yes", "--components", "database"], env)
        assert done.returncode == 1, done.stderr
        assert any("no space left on the disk holding BACKUP_PATH" in line for line in error_lines(done.stderr)), done.stderr
        assert store.backup_ids() == [kept] and nothing_staged(store)
        assert verify_backup(store.published(kept)).valid  # the earlier backup is whole
        with psycopg.connect(seeded) as db:  # and the project unchanged: the table the backup lacks is still there
            assert db.execute("SELECT count(*) FROM public.blobs").fetchone()[0] == 6

        # without a safety backup the rollback needs no room, and a disk full to the last byte does not
        # turn a restore that committed into a failure: its report, which cannot be kept, is a warning
        with psycopg.connect(seeded, autocommit=True) as db:
            db.execute("DELETE FROM public.items WHERE id > 10")
        filler = small_disk / "filler"
        with open(filler, "wb") as f:
            with pytest.raises(OSError):
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
        for components in ("database,users", "storage"):  # a backup that cannot even start its folder
            done = cli(["backup", "--components", components], env)
            assert done.returncode == 1 and "no space left on the disk holding BACKUP_PATH" in done.stderr, done.stderr
        done = cli(["rollback", kept, "--yes", "--no-safety-backup", "--components", "database"], env)
        assert done.returncode == 0, done.stderr
        assert "this rollback's report could not be kept" in done.stdout + done.stderr
        with psycopg.connect(seeded) as db:
            assert db.execute("SELECT count(*) FROM public.items").fetchone()[0] == 50
        filler.unlink()
        assert not list(store.root.rglob("*.tmp"))  # no half-written file left behind
        assert verify_backup(store.published(kept)).valid
    finally:
        with psycopg.connect(seeded, autocommit=True) as db:
            db.execute("DROP TABLE public.blobs")


def test_ctrl_c_stops_a_backup_says_interrupted_exits_130_and_cleans_up(env, seeded):
    with psycopg.connect(seeded, autocommit=True) as db:
        db.execute("CREATE TABLE public.bulk AS SELECT g AS id, repeat(md5(g::text), 8) AS payload"
                   " FROM generate_series(1, 1500000) g")
    store = BackupStore(Path(env["BACKUP_PATH"]))
    proc = start_group([sys.executable, "-m", "supabackup_pipeline", "backup", "--components", "database"],
                       env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not list(store.staging_root.glob("*/database/public.bulk.parquet")):
            time.sleep(0.05)
        assert proc.poll() is None, "the backup finished before it could be interrupted"
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        out, err = proc.communicate(timeout=120)
    finally:
        stop_group(proc)
        with psycopg.connect(seeded, autocommit=True) as db:
            db.execute("DROP TABLE public.bulk")
    assert proc.returncode == 130, err
    assert err.rstrip().endswith("interrupted") and "Traceback" not in err and "KeyboardInterrupt" not in err
    assert store.backup_ids() == [] and nothing_staged(store)
    assert partitions(env) == []


def test_list_all_and_prune_find_and_clean_what_dead_runs_left(env):
    store = BackupStore(Path(env["BACKUP_PATH"]))
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale, running, unlaunched = "20260101T000000Z", "20260102T000000Z", "20250101T000000Z"
    for backup_id in (stale, running):
        (store.start(backup_id) / "database").mkdir()
        (store.staging(backup_id) / "database" / "t.parquet").write_bytes(b"x" * 5000)
    owner = json.loads(store.owner_file(stale).read_text())
    store.owner_file(stale).write_text(json.dumps({**owner, "pid": dead.pid}))  # its run is gone
    instance = dg.DagsterInstance.get()
    instance.add_dynamic_partitions(BACKUP_PARTITIONS_NAME, [stale, running, unlaunched, "before-migration"])

    listed = json.loads(cli(["list", "--all", "--json"], env).stdout)
    assert {s["backup_id"]: (s["state"], s["bytes"]) for s in listed["staging"]} == {
        stale: ("stale", 5000), running: ("running", 5000)}
    assert set(listed["orphan_partitions"]) == {stale, unlaunched, "before-migration"}
    text = cli(["list", "--all"], env).stdout
    assert re.search(rf"^{stale}\s+stale\s+5\.0 kB$", text, re.M), text

    done = cli(["prune", "--yes"], env)
    assert done.returncode == 0, done.stderr
    assert f"removed stale staging folder {stale}" in done.stdout
    assert store.staging_ids() == [running] and not store.owner_file(stale).exists()
    assert partitions(env) == [running]


@pytest.mark.parametrize("sensor, event", [(discard_failed_backup, "PIPELINE_FAILURE"),
                                           (discard_canceled_backup, "PIPELINE_CANCELED")])
def test_the_sensors_remove_what_a_failed_or_canceled_ui_backup_left(tmp_path, sensor, event):
    store = BackupStore(tmp_path)
    backup_id = "20260103T000000Z"
    store.start(backup_id)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(BACKUP_PARTITIONS_NAME, [backup_id])
        run = instance.create_run_for_job(dg.JobDefinition(graph_def=dg.GraphDefinition(name="backup_job", node_defs=[])),
                                          tags={"dagster/partition": backup_id})
        context = dg.build_run_status_sensor_context(
            sensor_name=sensor.name, dagster_instance=instance, dagster_run=run,
            dagster_event=dg.DagsterEvent(event_type_value=event, job_name="backup_job"),
            resources={"backups": BackupStorage(backup_path=str(tmp_path))},
        )
        sensor(context.for_run_failure() if event == "PIPELINE_FAILURE" else context)
        assert store.staging_ids() == [] and not store.owner_file(backup_id).exists()
        assert not instance.has_dynamic_partition(BACKUP_PARTITIONS_NAME, backup_id)


# ------------------------------------------------------------------ CLI runs are the code location's runs
def test_cli_runs_are_runs_of_the_workspace_code_location(env):
    """What the job's Runs page asks for (job name + the repository tag) and the timeline reads
    (the run's repository origin) find a CLI backup, under the location name workspace.yaml gives."""
    done = cli(["backup", "--components", "database", "--json"], env)
    assert done.returncode == 0, done.stderr
    run_id = json.loads(done.stdout)["run_id"]
    location = location_origin().location_name
    assert location == "supabackup_pipeline.definitions"  # workspace.yaml: python_module, no location_name
    instance = dg.DagsterInstance.from_config(env["DAGSTER_HOME"])
    try:
        on_job_page = instance.get_runs(dg.RunsFilter(job_name="backup_job", tags={
            ".dagster/repository": f"__repository__@{location}"}))
        assert [r.run_id for r in on_job_page] == [run_id]
        origin = on_job_page[0].remote_job_origin.repository_origin
        assert (origin.repository_name, origin.code_location_origin.location_name) == ("__repository__", location)
        assert on_job_page[0].tags["supabackup/source"] == "cli"
    finally:
        instance.dispose()


def test_after_a_rollback_the_asset_graph_defines_the_restored_table_and_the_live_users_tables(env, seeded):
    """The demo's story: a table dropped after the backup is restored by a rollback whose safety
    backup (taken while it was dropped) rewrote the asset list; the list follows the live project
    again and the run says to reload."""
    backup_id = run_backup(components=["database"])["backup_id"]
    with psycopg.connect(seeded, autocommit=True) as db:
        db.execute("DROP TABLE public.notes")
    done = cli(["rollback", backup_id, "--yes", "--components", "database"], env)
    assert done.returncode == 0, done.stderr
    assert "reload the code location" in done.stderr
    keys = {k.to_user_string() for k in build_definitions(env["BACKUP_PATH"]).resolve_asset_graph().get_all_asset_keys()}
    assert {"supabase/public/notes", "live/public/notes"} <= keys
    assert {"live/auth/users", "live/auth/identities", "live/auth/mfa_factors"} <= keys  # a rollback restores them


def test_cli_runs_take_the_location_name_the_given_workspace_file_uses(tmp_path, monkeypatch):
    """SUPABACKUP_WORKSPACE: a deployment whose workspace.yaml names the location gets CLI runs under that name."""
    (tmp_path / "workspace.yaml").write_text(
        "load_from:\n  - python_module:\n      module_name: supabackup_pipeline.definitions\n"
        "      location_name: supabackup\n")
    monkeypatch.setenv("SUPABACKUP_WORKSPACE", str(tmp_path / "workspace.yaml"))
    assert location_origin().location_name == "supabackup"
    monkeypatch.delenv("SUPABACKUP_WORKSPACE")
    assert location_origin().location_name == "supabackup_pipeline.definitions"  # the repository's workspace.yaml


# ------------------------------------------------------------------ honest status, exit codes
def test_quick_verify_never_says_valid_and_the_shown_status_is_the_last_full_verification(env):
    backup_id = run_backup(components=["database"])["backup_id"]
    flip(Path(env["BACKUP_PATH"]) / backup_id / "database" / "public.items.parquet")  # same size

    quick = cli(["verify", backup_id, "--quick"], env)
    assert quick.returncode == 0 and "sizes OK" in quick.stdout and "VALID" not in quick.stdout, quick.stdout
    report = json.loads(cli(["verify", backup_id, "--quick", "--json"], env).stdout)
    assert report["status"] == "sizes_ok" and report["valid"] is None

    full = cli(["verify", backup_id], env)
    assert full.returncode == 1 and "NOT VALID" in full.stdout
    assert cli(["verify", backup_id, "--quick"], env).returncode == 0  # sizes still match...
    listed = json.loads(cli(["list", "--json"], env).stdout)
    assert [b["status"] for b in listed] == ["invalid"]  # ...but it never upgrades the status
    assert json.loads(cli(["show", backup_id, "--json"], env).stdout)["status"] == "invalid"
    assert re.search(rf"^{backup_id}\s+invalid\s", cli(["list"], env).stdout, re.M)

    refused = cli(["rollback", backup_id, "--yes", "--no-safety-backup", "--components", "database"], env)
    assert refused.returncode == 2 and "does not verify" in error_lines(refused.stderr)[0], refused.stderr
    as_json = json.loads(cli(["rollback", backup_id, "--yes", "--components", "database", "--json"], env).stdout)
    assert as_json["status"] == "refused" and as_json["exit_code"] == 2


def test_exit_codes_per_command_and_errors_as_json(env):
    backup_id = run_backup(components=["database"])["backup_id"]
    cases = [
        (["backup", "--components", "database,foo"], 2, "unknown component(s) foo"),
        (["rollback", backup_id, "--components", "database,foo", "--yes"], 2, "unknown component(s) foo"),
        (["rollback", backup_id], 2, "confirm with --yes"),
        (["show", "20990101T000000Z"], 2, "unknown backup ID"),
        (["verify", "../x"], 2, "invalid backup ID"),
        (["delete", backup_id, "--yes"], 2, "only valid backup"),  # refused, and said on stderr
        (["list", "--bogus"], 2, "unrecognized arguments"),
    ]
    for args, code, text in cases:
        done = cli(args, env)
        assert done.returncode == code, (args, done.stdout, done.stderr)
        assert text in done.stderr and "Traceback" not in done.stderr and text not in done.stdout, (args, done.stderr)
        as_json = cli([*args, "--json"], env)
        assert as_json.returncode == code
        out = json.loads(as_json.stdout)
        assert out["exit_code"] == code and text in out["error"], (args, out)

    bare = {k: v for k, v in env.items() if k not in UNSET}
    done = cli(["backup"], {**bare, **{k: "" for k in UNSET}})
    assert done.returncode == 2 and len(error_lines(done.stderr)) == 1
    assert all(name in done.stderr for name in UNSET), done.stderr


# ------------------------------------------------------------------ readable output
def test_show_list_and_the_dry_run_read_as_tables_with_content_changes(env, seeded):
    backup_id = run_backup(description="before the change", components=["database", "users"])["backup_id"]
    with psycopg.connect(seeded, autocommit=True) as db:
        db.execute("UPDATE public.items SET name = 'renamed' WHERE id = 7")  # same row count
    try:
        shown = cli(["show", backup_id], env).stdout
        assert re.search(r"^components\s+database, users$", shown, re.M), shown
        assert re.search(r"^size\s+\d+\.\d kB$", shown, re.M) and "[" not in shown
        assert re.search(r"^public\.items\s+50$", shown, re.M)
        listed = cli(["list"], env).stdout
        assert re.search(rf"^{backup_id}\s+valid\s+\d+\.\d kB\s+\S+\s+database, users\s+never\s+before the change$",
                         listed, re.M), listed

        dry = cli(["rollback", backup_id, "--dry-run", "--components", "database"], env)
        assert dry.returncode == 0, dry.stderr
        assert "{" not in dry.stdout and "dry run: nothing was changed" in dry.stdout
        assert re.search(r"^\s+public\.items\s+50\s+50\s+changed\s", dry.stdout, re.M), dry.stdout
        assert re.search(r"^\s+public\.notes\s+20\s+20\s+same\s", dry.stdout, re.M), dry.stdout
        plan = json.loads(cli(["rollback", backup_id, "--dry-run", "--components", "database", "--json"], env).stdout)
        changed = {t["table"]: t["content_changed"] for t in plan["plan"]["database"]["tables"]}
        assert changed == {"public.items": True, "public.notes": False}

        done = cli(["rollback", backup_id, "--yes", "--no-safety-backup", "--components", "database"], env)
        assert done.returncode == 0, done.stderr
        assert "{" not in done.stdout and f"Rollback to {backup_id}: restored" in done.stdout
        assert re.search(r"^Restored 2 table\(s\), 70 rows; post-validated by ", done.stdout, re.M), done.stdout
        with psycopg.connect(seeded) as db:
            assert db.execute("SELECT name FROM public.items WHERE id = 7").fetchone() == ("item 7",)
    finally:
        with psycopg.connect(seeded, autocommit=True) as db:
            db.execute("UPDATE public.items SET name = 'item 7' WHERE id = 7")


def test_content_check_says_unknown_without_a_digest_and_changed_for_a_dropped_table(env, seeded):
    backup_id = run_backup(components=["database"])["backup_id"]
    store = BackupStore(Path(env["BACKUP_PATH"]))
    root = store.published(backup_id)
    planned = [{"table": "public.items", "exists": True}, {"table": "public.notes", "exists": True}]
    items, notes = probes_from_plan(root, store.manifest(backup_id), planned)
    no_digest = TableProbe(items.ref, {k: v for k, v in items.sidecar.items() if k != "copy_sha256"}, True)
    dropped = TableProbe(notes.ref, notes.sidecar, False)
    with psycopg.connect(seeded) as conn:
        assert content_changes(conn, root, [items, notes]) == {"public.items": False, "public.notes": False}
        assert content_changes(conn, root, [no_digest, dropped]) == {"public.items": None, "public.notes": True}


def test_the_database_plan_renders_schema_changes_when_present_and_without_them():
    tables = [{"table": "public.a", "exists": True, "rows_now": 3, "rows_after": 5, "drift": [], "content_changed": True}]
    without = "\n".join(render_database_plan({"tables": tables}))
    assert re.search(r"public\.a\s+3\s+5\s+changed", without) and "Schema changes" not in without
    changes = [{"kind": "view", "name": "public.v", "action": "replace", "detail": "definition differs"},
               {"kind": "function", "name": "public.f()", "action": "create"}]
    text = "\n".join(render_database_plan({"tables": tables, "schema_changes": changes}))
    assert "Schema changes:" in text and "replace  view public.v  (definition differs)" in text
    assert "create   function public.f()" in text


def test_ctrl_d_at_the_confirmation_is_no_confirmation(monkeypatch, capsys):
    """End of input (Ctrl-D) at the prompt means "not confirmed", not `error: EOFError`."""
    from supabackup_pipeline import cli as cli_module

    def end_of_input(_prompt):
        raise EOFError

    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("builtins.input", end_of_input)
    assert cli_module.confirm("Roll back?", "20260101T000000Z", yes=False) is False


def test_a_backup_whose_manifest_is_damaged_is_listed_verified_and_deleted_by_name(env):
    """One unreadable metadata.json broke `list`, `prune` and `delete` for every backup with a raw
    JSONDecodeError; now that backup stands as invalid, with the reason, and the others are untouched."""
    damaged = run_backup(components=["database"])["backup_id"]
    other = run_backup(components=["database"])["backup_id"]
    for damage in ("[]", '{"backup_id": "x", trunc'):  # not an object, then not JSON
        (Path(env["BACKUP_PATH"]) / damaged / "metadata.json").write_text(damage)
        listed = cli(["list", "--json"], env)
        assert listed.returncode == 0, listed.stderr
        status = {b["backup_id"]: b["status"] for b in json.loads(listed.stdout)}
        assert status == {damaged: "invalid", other: "valid"}
    shown = cli(["show", damaged], env)
    assert shown.returncode == 0 and "metadata.json" in shown.stdout and "Traceback" not in shown.stderr
    verified = cli(["verify", damaged], env)
    assert verified.returncode == 1 and "NOT VALID" in verified.stdout and "metadata.json" in verified.stdout
    refused = cli(["rollback", damaged, "--yes", "--components", "database", "--no-safety-backup"], env)
    assert refused.returncode == 2 and f"backup {damaged} cannot be restored: " in refused.stderr + refused.stdout
    assert "metadata.json is unreadable" in refused.stderr + refused.stdout
    pruned = cli(["prune", "--dry-run"], env)
    assert pruned.returncode == 0 and damaged in pruned.stdout, pruned.stdout + pruned.stderr
    deleted = cli(["delete", damaged, "--yes"], env)
    assert deleted.returncode == 0, deleted.stderr
    assert BackupStore(Path(env["BACKUP_PATH"])).backup_ids() == [other]


def test_verify_on_a_read_only_backup_path_says_valid(env, small_disk):
    """The verification's record cannot be written beside a backup on a read-only mount; the CLI
    reads the result from the run instead of calling a valid backup FAILED."""
    env = {**env, "BACKUP_PATH": str(small_disk / "backups")}
    made = cli(["backup", "--components", "database", "--json"], env)
    assert made.returncode == 0, made.stderr
    backup_id = json.loads(made.stdout)["backup_id"]
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    done = cli(["verify", backup_id], env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "VALID" in done.stdout and "FAILED" not in done.stdout


def test_inputs_that_name_nothing_or_cannot_be_are_usage_errors(env):
    """Exit 2, one line naming the input, nothing started: an empty --tables (`--tables "$T"` with T
    unset is not "every table"), --tables without the database, a policy that keeps nothing or a
    negative count, and a BACKUP_PATH under a file (backup and refresh-tables would create it)."""
    backup_id = run_backup(components=["database"])["backup_id"]
    a_file = Path(env["BACKUP_PATH"]).parent / "a-file"
    a_file.write_text("not a folder")
    cases = [
        (["rollback", backup_id, "--tables", "", "--yes"], {}, "--tables '' names no table"),
        (["rollback", backup_id, "--tables", " , ", "--yes"], {}, "--tables ' , ' names no table"),
        (["rollback", backup_id, "--components", "storage", "--tables", "public.t", "--yes"], {},
         "--tables needs the database component"),
        (["prune", "--keep-last", "-1", "--dry-run"], {}, "--keep-last (or SUPABACKUP_KEEP_LAST) must be 0 or more, not -1"),
        (["prune", "--keep-last", "0", "--keep-weekly", "0", "--dry-run"], {}, "a policy that keeps nothing"),
        (["backup", "--components", "database"], {"BACKUP_PATH": str(a_file / "backups")},
         f"BACKUP_PATH {a_file / 'backups'} cannot be a folder: {a_file} is a file"),
        (["refresh-tables"], {"BACKUP_PATH": str(a_file)}, f"BACKUP_PATH {a_file} cannot be a folder"),
        (["list"], {"BACKUP_PATH": str(a_file)}, f"BACKUP_PATH {a_file} does not exist (or is not a folder)"),
    ]
    for args, changed, text in cases:
        done = cli(args, {**env, **changed})
        assert done.returncode == 2 and text in done.stderr, (args, done.stdout, done.stderr)
        assert len(error_lines(done.stderr)) == 1 and "Traceback" not in done.stderr, done.stderr
    assert BackupStore(Path(env["BACKUP_PATH"])).backup_ids() == [backup_id]


def test_a_run_refused_because_another_run_writes_its_backup_id_leaves_that_runs_folder(tmp_path):
    """The second run of one backup ID ends canceled as refused; the sensor must not remove the
    staging folder and partition of the first run, which is still writing them."""
    from supabackup_pipeline.core.staging import StagingHeld
    from supabackup_pipeline.settings import Tag

    store = BackupStore(tmp_path)
    backup_id = "20260104T000000Z"
    store.start(backup_id)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(BACKUP_PARTITIONS_NAME, [backup_id])
        run = instance.create_run_for_job(
            dg.JobDefinition(graph_def=dg.GraphDefinition(name="backup_job", node_defs=[])),
            tags={"dagster/partition": backup_id, Tag.REFUSED: f"backup {backup_id} {StagingHeld.MARK} (pid 1 on h)"})
        context = dg.build_run_status_sensor_context(
            sensor_name=discard_canceled_backup.name, dagster_instance=instance, dagster_run=run,
            dagster_event=dg.DagsterEvent(event_type_value="PIPELINE_CANCELED", job_name="backup_job"),
            resources={"backups": BackupStorage(backup_path=str(tmp_path))},
        )
        discard_canceled_backup(context)
        assert store.staging_ids() == [backup_id]
        assert instance.has_dynamic_partition(BACKUP_PARTITIONS_NAME, backup_id)
