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
from ui.dagster_ui import INSTANCE_YAML

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
    (base / "home" / "dagster.yaml").write_text(INSTANCE_YAML)
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


def launch_and_wait(gql, repo, job: str, config: dict | None = None, partition: str = BACKUP_ID) -> tuple[str, str]:
    """Launch a run as the UI's launchpad does; (run ID, the status it ended with)."""
    params = {"selector": {**repo, "jobName": job}, "runConfigData": config or {},
              "executionMetadata": {"tags": [{"key": "dagster/partition", "value": partition}]}}
    result = gql(LAUNCH, params=params)["launchRun"]
    assert result["__typename"] == "LaunchRunSuccess", result
    run_id = result["run"]["runId"]
    return run_id, wait_for_status(gql, run_id)


def wait_for_status(gql, run_id: str) -> str:
    """The status a run ends with."""
    deadline = time.monotonic() + 180
    while (status := gql(STATUS, id=run_id)["runOrError"]["status"]) not in ("SUCCESS", "FAILURE", "CANCELED"):
        assert time.monotonic() < deadline, f"run {run_id} still {status}"
        time.sleep(1)
    return status


ERRORS = """query($id: ID!) { logsForRun(runId: $id) { ... on EventConnection { events { __typename
  ... on ErrorEvent { error { message stack } } ... on MessageEvent { message level } } } } }"""


def run_errors(gql, run_id: str) -> str:
    """The run's error events and error-level messages, so a failed run says why."""
    events = gql(ERRORS, id=run_id)["logsForRun"].get("events", [])
    lines = [f"{e['__typename']}: {e.get('message')}\n{''.join((e.get('error') or {}).get('stack') or [])}"
             f"{(e.get('error') or {}).get('message', '')}"
             for e in events if e.get("error") or e.get("level") in ("ERROR", "CRITICAL")]
    return "\n".join(lines)


MESSAGES = """query($id: ID!) { logsForRun(runId: $id) { ... on EventConnection { events {
  ... on MessageEvent { message } } } } }"""


def executed_in_process(gql, run_id: str) -> bool:
    """Whether the run's steps ran in the run's own process (Dagster's in-process executor says so
    in an engine event; the multiprocess executor names its parent process instead)."""
    messages = [e.get("message") or "" for e in gql(MESSAGES, id=run_id)["logsForRun"].get("events", [])]
    assert any(m.startswith("Executing steps ") for m in messages), messages
    return any(m.startswith("Executing steps in process") for m in messages)


def launch(gql, repo, job: str, config: dict | None = None, partition: str = BACKUP_ID) -> str:
    run_id, status = launch_and_wait(gql, repo, job, config, partition)
    assert status == "SUCCESS", f"{job} run {run_id} ended {status}:\n{run_errors(gql, run_id)}"
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
    assert not executed_in_process(gql, backup_run)  # its database and Storage steps run in parallel

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
    validate_run = launch(gql, repo, "validate_backup_job")
    assert json.loads((backups / BACKUP_ID / "verification.json").read_text())["valid"] is True
    assert executed_in_process(gql, validate_run)  # one step: no step process to start

    # POST /migration/rollback/:backupId (with the confirmation a real rollback needs)
    with psycopg.connect(env["SUPABASE_DB_URL"], autocommit=True) as db:
        db.execute("DELETE FROM public.things WHERE id > 10")
    rollback_run = launch(gql, repo, "rollback_job", {"ops": {"verify_and_protect": {"config": {
        "confirm": BACKUP_ID, "safety_backup": False, "components": ["database", "users"]}}}})
    with psycopg.connect(env["SUPABASE_DB_URL"]) as db:
        assert db.execute("SELECT count(*) FROM public.things").fetchone()[0] == 50

    assert not executed_in_process(gql, rollback_run)  # a dead restore step still fails the run (rollback_job)

    # GET /migration/rollbacks
    assert rollback_run in runs_tagged(gql, "rollback")

    # DELETE /migration/backup/:id (force: it is the only backup)
    launch(gql, repo, "delete_backup_job", {"ops": {"delete_backup": {"config": {"force": True}}}})
    assert not (backups / BACKUP_ID).exists()


# What the UI asks for: a job's Runs page (RunsFeedRootQuery, PipelineRunsFeedRoot.tsx: the job name
# plus the tag `.dagster/repository=<repo>@<location>`) and the Overview timeline (runsOrError, runs
# grouped by `repositoryOrigin`; runs without one are left out).
JOB_PAGE = """query($filter: RunsFilter) { runsFeedOrError(limit: 30, filter: $filter, view: RUNS) {
    ... on RunsFeedConnection { results { id } } } }"""
TIMELINE = """query($id: String!) { runsOrError(filter: {runIds: [$id]}) { ... on Runs { results {
    repositoryOrigin { repositoryName repositoryLocationName } } } } }"""
PARTITION_STATUS = """query($path: [String!]!) { assetNodeOrError(assetKey: {path: $path}) { __typename ... on AssetNode {
    assetPartitionStatuses { ... on DefaultPartitionStatuses { materializedPartitions failedPartitions } } } } }"""
CHECK_STATUS = """query($path: [String!]!) { assetNodeOrError(assetKey: {path: $path}) { ... on AssetNode {
    assetChecksOrError { ... on AssetChecks { checks { name executionForLatestMaterialization { status } } } } } } }"""
RUNS_WITH_TAG = """query($key: String!, $value: String!) { runsOrError(filter: {tags: [{key: $key, value: $value}]}) {
    ... on Runs { results { runId pipelineName status } } } }"""


def wait_for_runs(gql, key: str, value: str, seconds: float = 120) -> list[dict]:
    deadline = time.monotonic() + seconds
    while not (runs := gql(RUNS_WITH_TAG, key=key, value=value)["runsOrError"]["results"]):
        assert time.monotonic() < deadline, f"no run tagged {key}={value}"
        time.sleep(2)
    return runs


def test_cli_runs_show_on_the_job_page_and_timeline_reach_the_sensors_and_a_refused_relaunch_stays_green(dagster_dev):
    gql, repo, env = dagster_dev
    done = subprocess.run([sys.executable, "-m", "supabackup_pipeline", "backup", "--components", "database,users",
                           "--description", "from the shell", "--json"],
                          env=env, capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    backup = json.loads(done.stdout)
    label = f"{repo['repositoryName']}@{repo['repositoryLocationName']}"
    page = gql(JOB_PAGE, filter={"pipelineName": "backup_job", "tags": [{"key": ".dagster/repository", "value": label}]})
    assert backup["run_id"] in [r["id"] for r in page["runsFeedOrError"]["results"]]
    [on_timeline] = gql(TIMELINE, id=backup["run_id"])["runsOrError"]["results"]
    assert on_timeline["repositoryOrigin"] == {"repositoryName": repo["repositoryName"],
                                               "repositoryLocationName": repo["repositoryLocationName"]}
    # retention ran after it (the daemon's prune_after_backup), as after a backup launched in the UI; the
    # daemon ticks sensors every 30 s or more, later still on a busy machine, and the runs of the test
    # before (validate, rollback, delete …) must not hold it back by a tick each
    [prune] = wait_for_runs(gql, "dagster/run_key", f"prune-after-{backup['run_id']}", seconds=150)
    assert prune["pipelineName"] == "prune_job"

    # the UI can re-execute a CLI run: its run config (in-process executor, the CLI's logger) is the job's own
    verified = subprocess.run([sys.executable, "-m", "supabackup_pipeline", "verify", backup["backup_id"], "--json"],
                              env=env, capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL)
    assert verified.returncode == 0, verified.stderr
    again = gql("""mutation($id: String!) { launchRunReexecution(reexecutionParams: {parentRunId: $id, strategy: ALL_STEPS}) {
        __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
        ... on RunConfigValidationInvalid { errors { message } } } }""", id=json.loads(verified.stdout)["run_id"])
    assert again["launchRunReexecution"]["__typename"] == "LaunchRunSuccess", again
    assert wait_for_status(gql, again["launchRunReexecution"]["run"]["runId"]) == "SUCCESS"

    # the manifest's metadata for that partition: who took it, when, how long, per table
    data = gql("""query($part: String!) { assetOrError(assetKey: {path: ["supabase", "backup", "manifest"]}) {
        ... on Asset { assetMaterializations(partitions: [$part]) { metadataEntries { label __typename
            ... on TextMetadataEntry { text } ... on TableMetadataEntry { table { records } } } } } } }""",
               part=backup["backup_id"])
    [materialization] = data["assetOrError"]["assetMaterializations"]
    entries = {e["label"]: e for e in materialization["metadataEntries"]}
    assert entries["description"]["text"] == "from the shell" and entries["taken_by"]["text"] == "command line"
    assert {"created_at", "duration_s"} <= set(entries)
    tables = {json.loads(r)["table"]: json.loads(r)["rows"] for r in entries["tables"]["table"]["records"]}
    assert tables["public.things"] == 50 and "auth.users" in tables

    # re-launching that backup ID from the UI is refused: the run ends canceled, the backup stays green
    run_id, status = launch_and_wait(gql, repo, "backup_job", partition=backup["backup_id"])
    assert status == "CANCELED"
    tags = gql("query($id: ID!) { runOrError(runId: $id) { ... on Run { tags { key value } } } }",
               id=run_id)["runOrError"]["tags"]
    assert "already exists" in {t["key"]: t["value"] for t in tags}["supabackup/refused"]
    # (the assets every code location defines; table assets appear after a reload)
    for path in (["supabase", "backup", "manifest"], ["supabase", "database", "schema"], ["supabase", "auth", "users"]):
        node = gql(PARTITION_STATUS, path=path)["assetNodeOrError"]
        assert node["__typename"] == "AssetNode", (path, node)
        statuses = node["assetPartitionStatuses"]
        assert backup["backup_id"] in statuses["materializedPartitions"], (path, statuses)
        assert backup["backup_id"] not in statuses["failedPartitions"], (path, statuses)
        # nor does its integrity check (not partitioned: its latest execution) say "Execution failed"
        for check in gql(CHECK_STATUS, path=path)["assetNodeOrError"]["assetChecksOrError"]["checks"]:
            latest = check["executionForLatestMaterialization"] or {}
            assert latest.get("status") not in ("EXECUTION_FAILED", "FAILED"), (path, check)  # the refused run's: SKIPPED
