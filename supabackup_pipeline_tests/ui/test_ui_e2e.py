"""The Dagster UI in a real browser (Chromium through Playwright), against `dagster dev` on the local stack.

Two tests, in the order a person would use the UI, that together perform every "Dagster UI" action
of the README's endpoint table:

1. look at the asset graph and its lineage, add a backup ID as a partition and launch backup_job,
   see the run succeed and the integrity checks pass, damage the project, launch rollback_job from
   its launchpad (partition + `confirm`), see it succeed, check in the database and Storage that
   the project is back to the backup, and find the rollback in Runs filtered by supabackup/kind.
2. with a second backup (taken by the CLI into the same instance): find it on backup_job's Runs page,
   see a relaunch of its ID refused (the run canceled, every partition still materialized), list
   the backups (the manifest's partitions, Runs filtered by supabackup/kind), read one backup's
   manifest metadata (description, taken_by, created_at, duration, rows per table), validate it
   from validate_backup_job's launchpad, delete it from delete_backup_job's launchpad, and see its
   folder and partition gone.

Screenshots and dagster dev's log go to test-artifacts/ui/ (gitignored); on failure also
failure.png and a Playwright trace (trace.zip: `playwright show-trace test-artifacts/ui/trace.zip`).
SUPABACKUP_UPDATE_SCREENSHOTS=1 also copies two of them to docs/screenshots/ for the README.
Skipped only when Chromium is not installed (Debian: `apt-get install chromium`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from datetime import datetime, timezone

import psycopg
import pytest
import yaml

from supabackup_pipeline.assets.keys import key_part

sys.path.insert(0, os.path.dirname(__file__))
from ui.dagster_ui import (  # noqa: E402
    ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, INSTANCE_YAML, ROOT, DagsterDev, Shots, Steps, filter_runs_by_tag, launch_run,
    metadata_value, open_launchpad, run_id_from_url, settle, visible_text, wait_for_run_to_finish, zoom_graph_to_fit,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not os.path.exists(CHROMIUM),
                       reason=f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)"),
    pytest.mark.timeout(300),
]

RUN_TIMEOUT_S = 120  # one backup of this small project takes ~30-50 s (queue + a process per step), others ~15 s


def show_whole_graph(page, labels: list[str]) -> None:
    """Hide the asset tree beside the graph and zoom out until every group and asset is in the window."""
    tree_search = page.get_by_placeholder("Jump to…")
    if tree_search.is_visible():
        page.get_by_role("button", name="panel_show_right").last.click()  # the toggle beside "Jump to…"
        tree_search.wait_for(state="hidden")
    zoom_graph_to_fit(page, labels)


def cli_backup(env: dict[str, str], description: str) -> dict:
    """`supabackup backup --json` in this environment (its DAGSTER_HOME gets the run); returns the summary."""
    command = [sys.executable, "-m", "supabackup_pipeline", "backup", "--description", description, "--json"]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def relaunch_backup(server, backup_id: str) -> str:
    """Launch backup_job for an existing partition, as Materialize on it in the UI does; the run ID."""
    selector = {"repositoryName": "__repository__", "repositoryLocationName": "supabackup_pipeline.definitions",
                "jobName": "backup_job"}
    launched = server.graphql(
        """mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
            __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }""",
        params={"selector": selector, "executionMetadata": {"tags": [{"key": "dagster/partition", "value": backup_id}]}},
    )["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    return launched["run"]["runId"]


def project_state(db_url: str) -> dict:
    """Every row of every public table and of auth.users, as text, order-independent."""
    with psycopg.connect(db_url) as db:
        tables = [r[0] for r in db.execute(
            "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")]
        state = {}
        for table in [*tables, "auth.users"]:
            state[table] = sorted(r[0] for r in db.execute(f"SELECT to_jsonb(t)::text FROM {table} t"))
    return state


@pytest.fixture(scope="module")
def project(stack, project_db_url, new_module_bucket):
    """A small project: two tables with a foreign key, a user, a bucket with one file."""
    from supabase import create_client

    with psycopg.connect(project_db_url, autocommit=True) as db:
        db.execute("""
            CREATE TABLE public.customers (id serial PRIMARY KEY, name text NOT NULL, email text);
            CREATE TABLE public.orders (id serial PRIMARY KEY,
                customer_id int NOT NULL REFERENCES public.customers(id), total numeric(10,2));
            INSERT INTO public.customers (name, email) VALUES ('Ada', 'ada@x.io'), ('Bob', 'bob@x.io'), ('Cy', NULL);
            INSERT INTO public.orders (customer_id, total) VALUES (1, 10.50), (1, 3.00), (2, 20.00), (3, 7.25);
            INSERT INTO auth.users (id, email, encrypted_password, raw_user_meta_data) VALUES
                ('11111111-1111-1111-1111-111111111111', 'ada@x.io', '$2a$10$adaadaadaadaadaadaada', '{"plan": "pro"}');
        """)
    env = stack.env()
    storage = create_client(env["SUPABASE_URL"], env["SUPABASE_SERVICE_ROLE_KEY"]).storage
    bucket = new_module_bucket("ui_invoices", public=False)  # a plain name: the asset is supabase/storage/ui_invoices
    storage.from_(bucket).upload("reports/hello.txt", b"hello from the UI test", {"content-type": "text/plain"})
    return {"db": project_db_url, "storage": storage, "bucket": bucket}


@pytest.fixture(scope="module")
def dagster_dev(stack, project, project_db_url, tmp_path_factory):
    """`dagster dev` (webserver + daemon) on the project, after a first CLI backup wrote the asset catalog."""
    from supabackup_pipeline.dev.postgres_cluster import free_port

    step = Steps()
    base = tmp_path_factory.mktemp("ui")
    home = base / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(
        INSTANCE_YAML + "concurrency:\n  pools:\n    default_limit: 1\n"  # as the README recommends for supabackup_project
    )
    env = {**os.environ, **stack.env(), "SUPABASE_DB_URL": project_db_url, "BACKUP_PATH": str(base / "backups"),
           "DAGSTER_HOME": str(home)}
    for key in ("TEMP_PATH", "SUPABACKUP_SCHEMAS"):
        env.pop(key, None)
    # The code location's asset list comes from BACKUP_PATH/.state/catalog.json, which a backup writes: take
    # one with the CLI first. It runs against an instance of its own, so that the UI's instance holds only
    # what the test does in the browser (every partition it shows is then complete: the asset graph is green).
    cli_backup({**env, "DAGSTER_HOME": str(base / "cli_dagster_home")}, "first (CLI)")
    step("first backup (CLI) wrote the asset catalog")

    if ARTIFACTS.exists():
        shutil.rmtree(ARTIFACTS)
    ARTIFACTS.mkdir(parents=True)
    server = DagsterDev(env, free_port(), ARTIFACTS / "dagster-dev.log")
    try:
        server.wait_ready(timeout=120)
        # Dismiss the one-time "Join the Dagster community" dialog shown on localhost (instance state).
        server.graphql("mutation { setNuxSeen }")
        step(f"dagster dev serving on {server.url}")
        yield server
    finally:
        server.stop()
        step("dagster dev stopped (process group killed)")


@pytest.fixture(scope="module")
def backups_taken() -> dict[str, str]:
    """Backup ID → run ID of each backup in the UI's instance, filled in by the tests as they take them."""
    return {}


@pytest.fixture
def page(dagster_dev, request):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1600, "height": 1000}, base_url=dagster_dev.url)
        context.set_default_timeout(30_000)
        context.tracing.start(screenshots=True, snapshots=True)
        page = context.new_page()
        failures_before = request.session.testsfailed
        yield page
        if request.session.testsfailed > failures_before:  # counted before fixtures are torn down
            try:
                page.screenshot(path=str(ARTIFACTS / "failure.png"))
            except Exception:
                pass
            context.tracing.stop(path=str(ARTIFACTS / "trace.zip"))
        else:
            context.tracing.stop()
        context.close()
        browser.close()


def test_backup_and_rollback_through_the_dagster_ui(dagster_dev, project, backups_taken, page):
    """POST /migration/backup, POST /migration/rollback/:backupId and GET /migration/rollbacks, in the browser."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import expect

    expect.set_options(timeout=15_000)  # one UI element to appear (runs get RUN_TIMEOUT_S)
    step = Steps()
    shot = Shots(page)
    bucket = project["bucket"]
    bucket_asset = key_part(bucket)  # asset keys hold [A-Za-z0-9_] only

    # 1. The asset graph: every group, expanded, with the table, users and storage assets, and the live
    # users tables a rollback restores (live/auth/identities, mfa_factors; "users" is both).
    graph_labels = ["live_project", "tables", "auth", "storage", "backup", "customers", "orders", "schema",
                    "users", "identities", "mfa_factors", bucket_asset, "storage_buckets", "manifest"]
    page.goto("/asset-groups")
    expect(page.get_by_text("live_project", exact=True).first).to_be_visible()
    page.mouse.click(1100, 200, button="right")  # the graph's background menu
    page.get_by_role("menuitem", name="Expand all groups").click()
    zoom_graph_to_fit(page, graph_labels)  # the graph draws only what is in the window
    for label in graph_labels:
        expect(page.get_by_text(label, exact=True).first).to_be_visible()
    # Only live tables have no materializations of their own yet: they are external assets.
    shot("asset-graph-expanded")
    show_whole_graph(page, graph_labels)
    shot("asset-graph")

    step("asset graph")

    # Lineage: the backup of a table reads its live table, and feeds the manifest.
    page.goto("/assets/supabase/public/orders")
    upstream = page.locator('a[href="/assets/live/public/orders"]')
    expect(upstream).to_be_visible()
    expect(upstream).to_have_text(re.compile(r"live\s*/\s*public\s*/\s*orders"))
    expect(page.locator('a[href="/assets/supabase/backup/manifest"]').first).to_be_visible()
    page.get_by_role("tab", name="Lineage").click()
    expect(page.get_by_text("live_project", exact=True).first).to_be_visible()
    shot("orders-lineage")
    # The users and the bucket are backup assets too, each feeding the manifest.
    for key in ("supabase/auth/users", f"supabase/storage/{bucket_asset}"):
        page.goto(f"/assets/{key}")
        expect(page.get_by_role("tab", name="Checks")).to_be_visible()
        expect(page.locator('a[href="/assets/supabase/backup/manifest"]').first).to_be_visible()

    step("lineage and asset pages")

    # 2. A new backup ID as a partition, added in the partition picker, and backup_job launched from the UI.
    backup_id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    before_backup = project_state(project["db"])
    page.goto("/jobs")
    page.locator("a", has_text=re.compile(r"^backup_job$")).click()
    expect(page).to_have_url(re.compile(r"/jobs/backup_job"))
    settle(page)
    page.get_by_role("button", name="Materialize all…").click()
    launch = page.get_by_role("dialog").filter(has_text="Launch runs to materialize")
    expect(launch).to_be_visible()
    settle(page)
    launch.get_by_role("button", name="Add a partition").click()
    add = page.get_by_role("dialog").filter(has_text="Add a partition for backup_ids")
    add.get_by_placeholder("name").fill(backup_id)
    add.get_by_role("button", name="Save").click()
    expect(add).to_be_hidden()
    # The dialog selects the partition it just added. Dagster's UI sometimes drops that selection (when
    # data it refetches arrives after the partition was added): then pick the partition in the picker.
    selected = launch.get_by_text("1 partition", exact=True)
    launch_one = launch.get_by_role("button", name="Launch 1 run")
    for attempt in range(3):
        try:
            expect(selected).to_be_visible(timeout=5_000)
        except AssertionError:
            print(f"  [ui] the new partition is not selected; choosing {backup_id} in the partition picker")
            launch.get_by_text("Select a partition or create one").click()
            picker_filter = page.get_by_placeholder("Filter partitions")  # a virtualised list: filter it first
            picker_filter.fill(backup_id)
            page.get_by_role("menuitem").filter(has_text=backup_id).first.click()
            picker_filter.press("Escape")  # closes the picker, not the dialog
            expect(picker_filter).to_be_hidden()
            expect(selected).to_be_visible()
        expect(launch.get_by_text(backup_id, exact=True).first).to_be_attached()
        if attempt == 0:
            shot("backup-launch-dialog")
        try:
            launch_one.click(timeout=5_000)  # "Launch backfill" instead when the selection was dropped again
            break
        except PlaywrightTimeout:
            continue
    else:
        raise AssertionError(f"could not launch one run of backup_job for the new partition {backup_id}")
    toast = page.get_by_text(re.compile(r"^Launched run [0-9a-f]{8}$"))
    expect(toast).to_be_visible()
    view = page.get_by_role("button", name="View", exact=True).or_(page.get_by_role("link", name="View", exact=True))
    view.first.click()
    expect(page).to_have_url(re.compile(r"/runs/[0-9a-f-]{36}"))
    backup_run = run_id_from_url(page.url)

    step("backup_job launched from the UI")

    # 3. The run succeeds and every integrity check passes.
    assert wait_for_run_to_finish(page, RUN_TIMEOUT_S) == "Success", f"backup run {backup_run} did not succeed"
    expect(page.get_by_text(f"partition: {backup_id}")).to_be_visible()
    shot("backup-run")
    log_filter = page.get_by_placeholder("Filter…")
    log_filter.fill("type:ASSET_CHECK_EVALUATION")
    log_filter.press("Enter")
    expect(page.get_by_text(re.compile(r"^Check integrity succeeded for materialization of")).first).to_be_visible()
    expect(page.get_by_text(re.compile(r"^Check integrity failed"))).to_have_count(0)
    shot("backup-run-checks")
    for asset in ("supabase/public/orders", "supabase/auth/users", f"supabase/storage/{bucket_asset}"):
        page.goto(f"/assets/{asset}?view=checks")
        expect(page.get_by_text("integrity", exact=True).first).to_be_visible()
        expect(page.get_by_text("Passed", exact=True).first).to_be_visible()
        expect(page.get_by_text(backup_id, exact=True).first).to_be_visible()  # the check's backup_id metadata
    shot("integrity-check-passed")
    manifest = json.loads((dagster_dev.backup_path / backup_id / "metadata.json").read_text())
    assert manifest["status"] == "valid", manifest.get("status")
    backups_taken[backup_id] = backup_run

    step("backup run succeeded, integrity checks passed")

    # 4. Damage the project, then roll it back from rollback_job's launchpad.
    with psycopg.connect(project["db"], autocommit=True) as db:
        db.execute("""
            DELETE FROM public.orders WHERE customer_id = 1;
            UPDATE public.customers SET email = 'changed@x.io' WHERE id = 2;
            INSERT INTO public.customers (name) VALUES ('after the backup');
            DELETE FROM auth.users;
        """)
    project["storage"].from_(bucket).remove(["reports/hello.txt"])
    assert project_state(project["db"]) != before_backup

    open_launchpad(page, "rollback_job", backup_id)
    # The launchpad scaffolds the partition's config with every default, `confirm: ''` included. Keep the op
    # that takes it, set `confirm` to the backup ID (and skip the safety backup), and type that in place of
    # the scaffold: select all, then one insertion (insert_text: the editor's auto-indent leaves it alone).
    editor = page.locator(".CodeMirror").first
    expect(editor).to_contain_text("confirm:")
    scaffold = yaml.safe_load(editor.evaluate("e => e.CodeMirror.getValue()"))
    confirm_ops = [op for op, body in scaffold["ops"].items() if "confirm" in ((body or {}).get("config") or {})]
    assert len(confirm_ops) == 1, scaffold["ops"]
    config = {"ops": {confirm_ops[0]: {"config": {"confirm": backup_id, "safety_backup": False}}}}
    editor.click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    page.keyboard.insert_text(yaml.safe_dump(config, sort_keys=False))
    expect(editor).to_contain_text(f"confirm: {backup_id}")
    assert yaml.safe_load(editor.evaluate("e => e.CodeMirror.getValue()")) == config
    expect(page.get_by_text("No errors", exact=True)).to_be_visible()
    shot("rollback-launchpad")
    rollback_run = launch_run(page)
    assert wait_for_run_to_finish(page, RUN_TIMEOUT_S) == "Success", f"rollback run {rollback_run} did not succeed"
    expect(page.get_by_text(f"partition: {backup_id}")).to_be_visible()
    rollback_shot = shot("rollback-run")
    log_filter = page.get_by_placeholder("Filter…")
    log_filter.fill("type:STEP_OUTPUT")
    log_filter.press("Enter")
    expect(page.get_by_text("restored", exact=True).first).to_be_visible()  # rollback_project's `status` metadata
    shot("rollback-run-output")

    step("rollback_job launched and succeeded")

    # The whole graph again: now every backup asset has materializations and the live tables were restored.
    page.goto("/asset-groups")
    expect(page.get_by_text("live_project", exact=True).first).to_be_visible()
    show_whole_graph(page, graph_labels)
    graph_shot = shot("asset-graph-after-rollback")

    # The restored live table shows in the catalog as materialized from the backup.
    page.goto("/assets/live/public/orders")
    expect(page.get_by_text("restored_from", exact=True).first).to_be_visible()
    expect(page.get_by_text(backup_id, exact=True).first).to_be_visible()
    shot("live-orders-restored")

    step("asset graph and live table after the rollback")

    # The project equals the backup again: every row, the user, the file.
    assert project_state(project["db"]) == before_backup
    assert project["storage"].from_(bucket).download("reports/hello.txt") == b"hello from the UI test"

    # 5. The rollback history: Runs filtered by the tag supabackup/kind=rollback list this rollback, and only it.
    rollback_runs = filter_runs_by_tag(page, "supabackup/kind", "rollback")
    expect(rollback_runs).to_have_text([rollback_run[:8]])
    expect(page.get_by_text(f"partition: {backup_id}").first).to_be_visible()
    expect(page.get_by_text("supabackup/kind: backup")).to_have_count(0)
    shot("runs-rollbacks")

    step("the rollback listed in Runs filtered by supabackup/kind=rollback")

    if os.environ.get("SUPABACKUP_UPDATE_SCREENSHOTS") == "1":  # refresh the README's two screenshots
        docs = ROOT / "docs" / "screenshots"
        docs.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(graph_shot, docs / "asset-graph.png")
        shutil.copyfile(rollback_shot, docs / "rollback-run.png")
    step(f"done: backup run {backup_run}, rollback run {rollback_run}; screenshots in {ARTIFACTS}")


def test_list_show_validate_and_delete_backups_in_the_dagster_ui(dagster_dev, backups_taken, page):
    """GET /migration/backups, GET /migration/backup/:id, POST /migration/validate-backup/:id and
    DELETE /migration/backup/:id, in the browser."""
    from playwright.sync_api import expect

    expect.set_options(timeout=15_000)
    step = Steps()
    shot = Shots(page)

    # Setup: one more backup, so that there is a list to read and the one deleted is not the last. The CLI takes it
    # into the UI's instance (same DAGSTER_HOME) in ~5 s; a run through the UI's queue takes ~45 s (test 1 does one).
    second = cli_backup(dagster_dev.env, "second (CLI)")
    backup_id = second["backup_id"]
    backups_taken[backup_id] = second["run_id"]
    manifest = json.loads((dagster_dev.backup_path / backup_id / "metadata.json").read_text())
    assert manifest["status"] == "valid", manifest.get("status")
    step(f"setup: backup {backup_id} taken with the CLI into the UI's instance")

    # A CLI run is a run of the code location: it is on backup_job's own Runs page, like a UI run.
    page.goto("/jobs")
    page.locator("a", has_text=re.compile(r"^backup_job$")).click()
    page.get_by_role("tab", name="Runs").click()
    expect(page.get_by_role("link").filter(has_text=re.compile(f"^{second['run_id'][:8]}$"))).to_be_visible()
    shot("backup-job-runs")

    # Materialize on that (published) backup ID again: refused, the run ends Canceled and says why.
    refused_run = relaunch_backup(dagster_dev, backup_id)
    page.goto(f"/runs/{refused_run}")
    assert wait_for_run_to_finish(page, RUN_TIMEOUT_S) == "Canceled"
    expect(page.get_by_text(re.compile(rf"BackupExists: backup {backup_id} already exists")).first).to_be_visible()
    shot("refused-relaunch")

    step("the CLI run on backup_job's Runs page; a relaunch of its ID refused (canceled)")

    # 1. GET /migration/backups: the manifest asset's partitions are the backup IDs, each one materialized...
    page.goto("/assets/supabase/backup/manifest?view=partitions")
    expect(page.get_by_text(f"Materialized ({len(backups_taken)})", exact=True)).to_be_visible()
    expect(page.get_by_text(re.compile(r"^Failed \([1-9]\d*\)$"))).to_have_count(0)  # the refused relaunch: still green
    for taken in backups_taken:
        expect(visible_text(page, taken)).to_have_count(1)
    shot("backups-partitions")
    # ... and Runs filtered by the tag supabackup/kind=backup are their backup runs, newest first.
    backup_runs = filter_runs_by_tag(page, "supabackup/kind", "backup")
    expect(backup_runs).to_have_text([refused_run[:8], *(run_id[:8] for run_id in reversed(backups_taken.values()))])
    for taken in backups_taken:  # (the second one twice: its backup run and the refused relaunch)
        expect(page.get_by_text(f"partition: {taken}").first).to_be_visible()
    shot("runs-backups")

    step("backups listed: the manifest's partitions, Runs filtered by supabackup/kind=backup")

    # 2. GET /migration/backup/:id: pick the partition; its materialization metadata is the backup's manifest.
    page.goto("/assets/supabase/backup/manifest?view=partitions")
    visible_text(page, backup_id).click()
    expect(page).to_have_url(re.compile(f"partition={backup_id}"))
    for label, value in {"backup_id": backup_id, "status": "valid", "files": str(len(manifest["files"])),
                         "total_size": str(manifest["total_size"]), "description": "second (CLI)",
                         "taken_by": "command line"}.items():
        expect(metadata_value(page, label)).to_have_text(value)
    expect(metadata_value(page, "components")).to_contain_text('"database"')
    expect(metadata_value(page, "created_at")).not_to_be_empty()
    expect(metadata_value(page, "duration_s")).not_to_be_empty()
    orders = metadata_value(page, "tables").locator("tr").filter(has=page.get_by_text("public.orders", exact=True))
    expect(orders.locator("td").nth(1)).to_have_text("4")  # rows, then bytes
    shot("backup-metadata")

    step("a backup's manifest metadata")

    # 3. POST /migration/validate-backup/:id: validate_backup_job from its launchpad, default config (every hash).
    open_launchpad(page, "validate_backup_job", backup_id)
    shot("validate-launchpad")
    validate_run = launch_run(page)
    assert wait_for_run_to_finish(page, RUN_TIMEOUT_S) == "Success", f"validate run {validate_run} did not succeed"
    expect(page.get_by_text(re.compile(rf"^backup {backup_id} is valid \(\d+ files")).first).to_be_visible()
    shot("validate-run")
    verification = json.loads((dagster_dev.backup_path / backup_id / "verification.json").read_text())
    assert verification["valid"] is True and verification["problems"] == [], verification

    step("validate_backup_job launched and succeeded")

    # 4. DELETE /migration/backup/:id: delete_backup_job from its launchpad. The scaffold's `force: false` is enough:
    # the backups taken before (test 1's, the fixture's first CLI backup) are valid too, so this one is not the last.
    open_launchpad(page, "delete_backup_job", backup_id)
    expect(page.locator(".CodeMirror").first).to_contain_text("force: false")
    shot("delete-launchpad")
    delete_run = launch_run(page)
    assert wait_for_run_to_finish(page, RUN_TIMEOUT_S) == "Success", f"delete run {delete_run} did not succeed"
    expect(page.get_by_text(re.compile(rf"^deleted backup {backup_id} \(")).first).to_be_visible()
    shot("delete-run")
    assert not (dagster_dev.backup_path / backup_id).exists()
    del backups_taken[backup_id]
    for taken in backups_taken:
        assert (dagster_dev.backup_path / taken / "metadata.json").exists(), f"{taken} was deleted too"

    # Its partition is gone from the manifest's partitions; the others stay.
    page.goto("/assets/supabase/backup/manifest?view=partitions")
    expect(page.get_by_text(f"Materialized ({len(backups_taken)})", exact=True)).to_be_visible()
    for taken in backups_taken:
        expect(visible_text(page, taken)).to_have_count(1)
    expect(visible_text(page, backup_id)).to_have_count(0)
    shot("backups-after-delete")

    step(f"done: validate run {validate_run}, delete run {delete_run}; the backup's folder and partition are gone")
