"""The seed's REST endpoints as Dagster GraphQL calls, against a running `dagster dev` (webserver + daemon).

Each call in the README's endpoint table is exercised here, in the order a user would: create a
backup, list and read it, validate it, roll back to it, list rollbacks, delete it.
"""

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psycopg
import pytest

from supabackup_pipeline.dev.postgres_cluster import free_port
from processes import start_group, stop_group

pytestmark = pytest.mark.e2e  # a running Dagster (webserver, daemon or instance database): left out of the fast subset

ROOT = Path(__file__).resolve().parents[2]
BACKUP_ID = "20261127T120000Z"


class GraphQL:
    def __init__(self, port: int):
        self.url = f"http://127.0.0.1:{port}/graphql"

    def __call__(self, query: str, **variables) -> dict:
        body = json.dumps({"query": query, "variables": variables}).encode()
        request = urllib.request.Request(self.url, data=body, headers={"Content-Type": "application/json"})
        data = json.loads(urllib.request.urlopen(request, timeout=30).read())
        assert "errors" not in data, data
        return data["data"]


@pytest.fixture(scope="module")
def dagster_dev(tmp_path_factory, stack_env, project_db_url):
    with psycopg.connect(project_db_url, autocommit=True) as db:
        db.execute("CREATE TABLE public.things (id int PRIMARY KEY, name text);"
                   " INSERT INTO public.things SELECT g, 'thing ' || g FROM generate_series(1, 50) g")
    base = tmp_path_factory.mktemp("graphql")
    port = free_port()
    env = {**os.environ, **stack_env, "SUPABASE_DB_URL": project_db_url, "BACKUP_PATH": str(base / "backups"),
           "DAGSTER_HOME": str(base / "home")}
    (base / "home").mkdir()
    (base / "home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    proc = start_group([sys.executable, "-m", "dagster", "dev", "-w", str(ROOT / "workspace.yaml"), "-p", str(port)],
                       cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    gql = GraphQL(port)
    deadline = time.monotonic() + 120
    while True:
        try:
            nodes = gql("{ repositoriesOrError { ... on RepositoryConnection { nodes { name location { name } } } } }")
            if nodes["repositoriesOrError"]["nodes"]:
                break
        except (OSError, AssertionError, KeyError):
            pass
        assert time.monotonic() < deadline and proc.poll() is None, "dagster dev did not come up"
        time.sleep(1)
    repo = nodes["repositoriesOrError"]["nodes"][0]
    yield gql, {"repositoryName": repo["name"], "repositoryLocationName": repo["location"]["name"]}, env
    stop_group(proc)


LAUNCH = """
mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } ... on RunConfigValidationInvalid { errors { message } } } }
"""
STATUS = "query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }"


def launch(gql, repo, job: str, config: dict | None = None, partition: str = BACKUP_ID) -> str:
    params = {"selector": {**repo, "jobName": job}, "runConfigData": config or {},
              "executionMetadata": {"tags": [{"key": "dagster/partition", "value": partition}]}}
    result = gql(LAUNCH, params=params)["launchRun"]
    assert result["__typename"] == "LaunchRunSuccess", result
    run_id = result["run"]["runId"]
    deadline = time.monotonic() + 180
    while (status := gql(STATUS, id=run_id)["runOrError"]["status"]) not in ("SUCCESS", "FAILURE", "CANCELED"):
        assert time.monotonic() < deadline, f"{job} still {status}"
        time.sleep(1)
    assert status == "SUCCESS", f"{job} run {run_id} ended {status}"
    return run_id


def runs_tagged(gql, kind: str) -> list[str]:
    data = gql("query($tags: [ExecutionTag!]) { runsOrError(filter: {tags: $tags}) { ... on Runs { results { runId status } } } }",
               tags=[{"key": "supabackup/kind", "value": kind}])
    return [r["runId"] for r in data["runsOrError"]["results"] if r["status"] == "SUCCESS"]


def test_every_seed_endpoint_has_a_graphql_call(dagster_dev):
    gql, repo, env = dagster_dev
    backups = Path(env["BACKUP_PATH"])

    # POST /migration/backup: add the partition, launch backup_job for it
    added = gql("""mutation($repo: RepositorySelector!, $key: String!) { addDynamicPartition(
        repositorySelector: $repo, partitionsDefName: "backup_ids", partitionKey: $key) { __typename } }""",
                repo=repo, key=BACKUP_ID)
    assert added["addDynamicPartition"]["__typename"] == "AddDynamicPartitionSuccess"
    backup_run = launch(gql, repo, "backup_job")
    assert json.loads((backups / BACKUP_ID / "metadata.json").read_text())["status"] == "valid"

    # GET /migration/backups: the backup runs (and their partitions)
    assert backup_run in runs_tagged(gql, "backup")

    # GET /migration/backup/:id: the manifest asset's materialization for that partition
    data = gql("""query($part: String!) { assetOrError(assetKey: {path: ["supabase", "backup", "manifest"]}) {
        ... on Asset { assetMaterializations(partitions: [$part]) { partition metadataEntries { label
            ... on TextMetadataEntry { text } ... on IntMetadataEntry { intValue } } } } } }""", part=BACKUP_ID)
    [materialization] = data["assetOrError"]["assetMaterializations"]
    entries = {e["label"]: e.get("text", e.get("intValue")) for e in materialization["metadataEntries"]}
    assert entries["status"] == "valid" and entries["backup_id"] == BACKUP_ID and entries["files"] > 0

    # POST /migration/validate-backup/:id
    launch(gql, repo, "validate_backup_job")
    assert json.loads((backups / BACKUP_ID / "verification.json").read_text())["valid"] is True

    # POST /migration/rollback/:backupId (with the confirmation a real rollback needs)
    with psycopg.connect(env["SUPABASE_DB_URL"], autocommit=True) as db:
        db.execute("DELETE FROM public.things WHERE id > 10")
    rollback_run = launch(gql, repo, "rollback_job", {"ops": {"verify_and_protect": {"config": {
        "confirm": BACKUP_ID, "safety_backup": False, "components": ["database", "users"]}}}})
    with psycopg.connect(env["SUPABASE_DB_URL"]) as db:
        assert db.execute("SELECT count(*) FROM public.things").fetchone()[0] == 50

    # GET /migration/rollbacks
    assert rollback_run in runs_tagged(gql, "rollback")

    # DELETE /migration/backup/:id (force: it is the only backup)
    launch(gql, repo, "delete_backup_job", {"ops": {"delete_backup": {"config": {"force": True}}}})
    assert not (backups / BACKUP_ID).exists()
