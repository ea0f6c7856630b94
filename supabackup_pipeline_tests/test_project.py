"""The project's own promises: coherent pins, CI runs the README's test command, the stack works."""

import os
import re
import subprocess
import sys
from importlib.metadata import requires, version
from pathlib import Path

import psycopg
import pytest

from processes import start_group, stop_group

ROOT = Path(__file__).resolve().parent.parent


def test_dagster_postgres_belongs_to_the_installed_dagster():
    dagster = version("dagster")
    pins = [r for r in requires("dagster-postgres") if r.startswith("dagster")]
    assert any(f"=={dagster}" in r.replace(" ", "") for r in pins), (dagster, pins)
    assert version("dagster-webserver") == version("dagster-graphql") == dagster
    assert version("sqlalchemy").startswith("2.0")


_WITHOUT_DEV_EXTRA = """
import sys
# as a production install (no `dev` extra): these cannot be imported
for name in ("supabase", "storage3", "jwt", "starlette", "uvicorn", "multipart"):
    sys.modules[name] = None
import warnings
warnings.simplefilter("error", DeprecationWarning)
import supabackup_pipeline.definitions as d
d.build_definitions().resolve_job_def("backup_job")
from supabackup_pipeline.cli import main
sys.exit(main(["stack", "up"]))
"""


def test_a_production_install_needs_no_web_server_and_no_deprecated_dagster_call():
    """The definitions load (no deprecation warning) without the `dev` extra; the local stack says
    it needs it instead of failing on an import."""
    done = subprocess.run([sys.executable, "-c", _WITHOUT_DEV_EXTRA], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "pip install 'supabackup_pipeline[dev]'" in done.stderr
    assert "Traceback" not in done.stderr
    extras = {r.split(";")[0].split(">")[0].split("=")[0].strip() for r in requires("supabackup_pipeline")
              if "extra" not in r}
    assert not extras & {"starlette", "uvicorn", "python-multipart", "pyjwt", "supabase"}


def test_ci_runs_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    commands = [c.split("#")[0].strip() for c in re.findall(r"^\s*(scripts/\S+.*)$", readme, re.M)]
    assert "scripts/test" in commands
    ci = (ROOT / ".ci/run").read_text()
    assert re.search(r"^scripts/test$", ci, re.M)
    assert "scripts/setup" in (ROOT / "scripts/test").read_text()
    assert "pytest" in (ROOT / "scripts/test").read_text()


def test_workspace_file_loads_the_code_location():
    text = (ROOT / "workspace.yaml").read_text()
    assert "supabackup_pipeline.definitions" in text and "working_directory: ." in text
    assert "[tool.dagster]" not in (ROOT / "pyproject.toml").read_text()


def test_stack_up_env_down_through_the_cli(tmp_path):
    env = {**os.environ, "SUPABACKUP_STACK_HOME": str(tmp_path / "stack"), "BACKUP_PATH": str(tmp_path / "backups")}
    run = lambda *args: subprocess.run([sys.executable, "-m", "supabackup_pipeline", *args], env=env,
                                       capture_output=True, text=True, timeout=120)
    up = run("stack", "up")
    assert up.returncode == 0, up.stderr
    try:
        env.pop("BACKUP_PATH")  # `stack env` from another shell still says where the backups are
        exports = dict(re.findall(r"^export (\w+)=(.*)$", run("stack", "env").stdout, re.M))
        assert set(exports) >= {"SUPABASE_URL", "SUPABASE_SERVICE_ROLE_KEY", "SUPABASE_DB_URL", "BACKUP_PATH"}
        assert exports["BACKUP_PATH"].strip("'") == str(tmp_path / "backups")  # the one set when it started
        with psycopg.connect(exports["SUPABASE_DB_URL"].strip("'")) as conn:
            assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone() == (False,)
            assert conn.execute("SELECT count(*) FROM auth.users").fetchone() == (0,)
        from supabase import create_client

        client = create_client(exports["SUPABASE_URL"].strip("'"), exports["SUPABASE_SERVICE_ROLE_KEY"].strip("'"))
        assert client.storage.list_buckets() == []
    finally:
        down = run("stack", "down")
    assert down.returncode == 0
    assert run("stack", "env").returncode == 1  # no stack running any more


@pytest.mark.e2e
def test_supabackup_dev_serves_the_dagster_ui_with_the_backup_job(tmp_path):
    import time
    import urllib.request

    from supabackup_pipeline.dev.postgres_cluster import free_port

    port = free_port()
    env = {**os.environ, "SUPABACKUP_STACK_HOME": str(tmp_path / "stack"), "DAGSTER_HOME": str(tmp_path / "home"),
           "BACKUP_PATH": str(tmp_path / "backups")}
    log = open(tmp_path / "dev.log", "wb")
    proc = start_group([sys.executable, "-m", "supabackup_pipeline", "dev", "--port", str(port)], env=env,
                       stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        body = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                query = b'{"query": "{ repositoriesOrError { ... on RepositoryConnection { nodes { jobs { name } } } } }"}'
                request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=query,
                                                 headers={"Content-Type": "application/json"})
                body = urllib.request.urlopen(request, timeout=5).read().decode()
                if "backup_job" in body:
                    break
            except OSError:
                pass
            time.sleep(1)
        assert body and "backup_job" in body, (tmp_path / "dev.log").read_text()[-3000:]
    finally:
        stop_group(proc)
        subprocess.run([sys.executable, "-m", "supabackup_pipeline", "stack", "down"], env=env, timeout=60)


@pytest.mark.e2e
def test_demo_backs_up_damages_rolls_back_and_verifies(tmp_path):
    env = {**os.environ, "SUPABACKUP_STACK_HOME": str(tmp_path / "stack"), "DAGSTER_HOME": str(tmp_path / "home"),
           "BACKUP_PATH": str(tmp_path / "backups")}
    try:
        done = subprocess.run([sys.executable, "-m", "supabackup_pipeline", "demo", "--no-ui"], env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        assert "every table, user and file is back" in done.stdout
        for step in ("seed", "backup", "damage", "rollback", "verify"):
            assert re.search(rf"^\s+{step}\s+[\d.]+ s$", done.stdout, re.M), done.stdout
        assert "telemetry:\n  enabled: false" in (tmp_path / "home" / "dagster.yaml").read_text()
        assert " - DEBUG - " not in done.stdout + done.stderr and "Traceback" not in done.stderr
    finally:
        subprocess.run([sys.executable, "-m", "supabackup_pipeline", "stack", "down"], env=env, timeout=60)


def test_the_storage_stand_in_starts_with_a_secret_that_looks_like_an_option(stack, tmp_path):
    """token_urlsafe() starts with '-' about once in 64 stacks; argparse must not take it for a flag."""
    import dataclasses
    import signal

    import httpx

    from supabackup_pipeline.dev.postgres_cluster import free_port
    from supabackup_pipeline.dev.stack import service_role_key, start_storage_api

    info = dataclasses.replace(stack, root=str(tmp_path), storage_port=free_port(), jwt_secret="-starts-with-a-dash-and-is-32-bytes-or-more")
    info.storage_data_dir.mkdir(parents=True)
    proc = start_storage_api(info, tmp_path / "storage-api.log")
    try:
        key = service_role_key(info.jwt_secret)
        listed = httpx.get(f"{info.supabase_url}/storage/v1/bucket", headers={"Authorization": f"Bearer {key}",
                                                                             "apikey": key})
        assert listed.status_code == 200, listed.text
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)


def _supabackup(args: list[str], env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "supabackup_pipeline", *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=timeout)


def test_supabackup_dev_refuses_a_taken_port_at_once(tmp_path):
    import socket
    import time

    env = {"SUPABACKUP_STACK_HOME": str(tmp_path / "stack"), "DAGSTER_HOME": str(tmp_path / "home")}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        done = _supabackup(["dev", "--port", str(port)], env, timeout=60)
    assert done.returncode == 2, done.stderr
    assert f"port {port} is already in use" in done.stderr and "Traceback" not in done.stderr
    assert time.monotonic() - started < 30
    assert _supabackup(["stack", "env"], env).returncode == 1  # nothing was started


def test_a_missing_backup_path_is_an_error_and_a_new_dagster_home_has_no_telemetry(tmp_path):
    env = {"BACKUP_PATH": str(tmp_path / "nonexistent"), "DAGSTER_HOME": str(tmp_path / "home")}
    done = _supabackup(["list"], env)
    assert done.returncode == 2 and f"BACKUP_PATH {tmp_path / 'nonexistent'} does not exist" in done.stderr
    (tmp_path / "nonexistent").mkdir()
    done = _supabackup(["list", "--all"], env)
    assert done.returncode == 0 and "no backups yet in" in done.stdout
    assert "telemetry:\n  enabled: false" in (tmp_path / "home" / "dagster.yaml").read_text()


def test_stopping_a_process_group_leaves_nothing_even_with_sigint_ignored():
    """As in a test run started with `nohup ... &`: a group whose processes ignore SIGINT and one that
    ignores SIGTERM too, with a `tail -F` grandchild like Dagster's log followers."""
    import signal
    import time

    from processes import group_alive, start_group, stop_group

    script = ("import signal, subprocess, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
              " signal.signal(signal.SIGINT, signal.SIG_IGN); subprocess.Popen(['tail', '-F', '/dev/null']);"
              " time.sleep(600)")
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        proc = start_group([sys.executable, "-c", script])
    finally:
        signal.signal(signal.SIGINT, previous)
    time.sleep(1)
    assert group_alive(proc.pid)
    started = time.monotonic()
    stop_group(proc, grace=2)
    assert not group_alive(proc.pid)
    assert time.monotonic() - started < 15
