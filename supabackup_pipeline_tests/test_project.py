"""The project's own promises: coherent pins, CI runs the README's test command, the stack works."""

import os
import re
import subprocess
import sys
from importlib.metadata import requires, version
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent


def test_dagster_postgres_belongs_to_the_installed_dagster():
    dagster = version("dagster")
    pins = [r for r in requires("dagster-postgres") if r.startswith("dagster")]
    assert any(f"=={dagster}" in r.replace(" ", "") for r in pins), (dagster, pins)
    assert version("dagster-webserver") == version("dagster-graphql") == dagster
    assert version("sqlalchemy").startswith("2.0")


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
    env = {**os.environ, "SUPABACKUP_STACK_HOME": str(tmp_path / "stack")}
    run = lambda *args: subprocess.run([sys.executable, "-m", "supabackup_pipeline", *args], env=env,
                                       capture_output=True, text=True, timeout=120)
    up = run("stack", "up")
    assert up.returncode == 0, up.stderr
    try:
        exports = dict(re.findall(r"^export (\w+)=(.*)$", run("stack", "env").stdout, re.M))
        assert set(exports) >= {"SUPABASE_URL", "SUPABASE_SERVICE_ROLE_KEY", "SUPABASE_DB_URL"}
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


def test_supabackup_dev_serves_the_dagster_ui_with_the_backup_job(tmp_path):
    import signal
    import time
    import urllib.request

    from supabackup_pipeline.dev.postgres_cluster import free_port

    port = free_port()
    env = {**os.environ, "SUPABACKUP_STACK_HOME": str(tmp_path / "stack"), "DAGSTER_HOME": str(tmp_path / "home"),
           "BACKUP_PATH": str(tmp_path / "backups")}
    log = open(tmp_path / "dev.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "supabackup_pipeline", "dev", "--port", str(port)], env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
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
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        subprocess.run([sys.executable, "-m", "supabackup_pipeline", "stack", "down"], env=env, timeout=60)


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
    finally:
        subprocess.run([sys.executable, "-m", "supabackup_pipeline", "stack", "down"], env=env, timeout=60)


def test_the_storage_stand_in_starts_with_a_secret_that_looks_like_an_option(stack, tmp_path):
    """token_urlsafe() starts with '-' about once in 64 stacks; argparse must not take it for a flag."""
    import dataclasses
    import signal

    import httpx

    from supabackup_pipeline.dev.postgres_cluster import free_port
    from supabackup_pipeline.dev.stack import service_role_key, start_storage_api

    info = dataclasses.replace(stack, root=str(tmp_path), storage_port=free_port(), jwt_secret="-starts-with-a-dash")
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
