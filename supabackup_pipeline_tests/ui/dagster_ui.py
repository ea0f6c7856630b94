"""`dagster dev` in its own process group, Debian's Chromium driven by Playwright, and the few UI
interactions the browser tests repeat (settling, launchpads, run status, filtering runs, fitting the
asset graph, screenshots)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import quote

from processes import start_group, stop_group

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "ui"

# The instance of the UI tests: no telemetry, and the run queue dequeued every second instead of
# every 5 s (Dagster's default), so that a launched run starts at once.
INSTANCE_YAML = (
    "telemetry:\n  enabled: false\n"
    "run_coordinator:\n  module: dagster._core.run_coordinator\n  class: QueuedRunCoordinator\n"
    "  config:\n    dequeue_interval_seconds: 1\n"
)

# The run page's status tag, once the run is over (RunStatusTag's labels).
FINAL_STATUS = re.compile(r"^(Success|Failure|Canceled)$")


class DagsterDev:
    """`python -m dagster dev -w workspace.yaml -p PORT` from the repository root, killed by process group."""

    def __init__(self, env: dict[str, str], port: int, log_path: Path):
        self.env = env
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log_path, "wb")
        self.proc = start_group(
            [sys.executable, "-m", "dagster", "dev", "-w", str(ROOT / "workspace.yaml"), "-p", str(port)],
            cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT,
        )

    @property
    def backup_path(self) -> Path:
        return Path(self.env["BACKUP_PATH"])

    def graphql(self, query: str, timeout: float = 30, **variables) -> dict:
        body = json.dumps({"query": query, "variables": variables}).encode()
        request = urllib.request.Request(f"{self.url}/graphql", data=body, headers={"Content-Type": "application/json"})
        data = json.loads(urllib.request.urlopen(request, timeout=timeout).read())
        if "errors" in data:
            raise AssertionError(data["errors"])
        return data["data"]

    def wait_ready(self, timeout: float = 120) -> None:
        """Until the webserver answers and the code location lists backup_job and rollback_job."""
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dagster dev exited with {self.proc.returncode}; see {self.log_path}")
            try:
                data = self.graphql("{ repositoriesOrError { ... on RepositoryConnection { nodes { jobs { name } } } } }",
                                    timeout=5)
                jobs = {j["name"] for n in data["repositoriesOrError"]["nodes"] for j in n["jobs"]}
                if {"backup_job", "rollback_job"} <= jobs:
                    return
                last = jobs
            except (OSError, AssertionError, KeyError, TypeError, ValueError) as exc:
                last = exc
            time.sleep(1)
        raise RuntimeError(f"dagster dev did not serve the code location within {timeout}s ({last!r}); see {self.log_path}")

    def stop(self) -> None:
        """The webserver, daemon and code server are in the same group: none outlives the test."""
        stop_group(self.proc)
        self._log.close()


class Steps:
    """Prints how long each step of the test took (the test must stay well under 3 minutes)."""

    def __init__(self):
        self.start = self.last = time.monotonic()

    def __call__(self, name: str) -> None:
        now = time.monotonic()
        print(f"  [ui] {now - self.start:6.1f}s  (+{now - self.last:5.1f}s)  {name}", flush=True)
        self.last = now


class Shots:
    """Numbered screenshots of the window in test-artifacts/ui/ (gitignored), numbered on from those already there."""

    def __init__(self, page, folder: Path = ARTIFACTS):
        self.page = page
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.count = len(list(folder.glob("[0-9][0-9]-*.png")))

    def __call__(self, name: str) -> Path:
        self.count += 1
        path = self.folder / f"{self.count:02d}-{name}.png"
        self.page.screenshot(path=str(path))
        return path


def settle(page, timeout_ms: int = 10_000) -> None:
    """Wait until the page's GraphQL queries are answered (no request for 500 ms).

    Needed before some clicks: a dialog opened while the page still loads is re-initialised when the
    page's data arrives (the backup launch dialog then drops the partition just added in it).
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_load_state("networkidle", timeout=timeout_ms)
    except PlaywrightTimeout:
        pass  # a page that polls without pause: carry on, the assertions that follow still wait


def zoom_graph_to_fit(page, labels: list[str], max_clicks: int = 12) -> None:
    """Click the asset graph's zoom-out button until every label of the graph is well inside the window."""
    viewport = page.viewport_size
    toolbar = page.get_by_role("textbox", name="Search and filter assets").first.bounding_box(timeout=10_000)
    top = (toolbar["y"] + toolbar["height"] if toolbar else 90) + 40  # below the toolbar around the search box
    margin = 16

    def all_inside() -> bool:
        for label in labels:
            node = page.locator("svg").get_by_text(label, exact=True).first
            if not node.count():  # not drawn: outside the window
                return False
            box = node.bounding_box(timeout=5_000)
            if box is None or box["x"] < margin or box["y"] < top or box["x"] + box["width"] > viewport["width"] - margin \
                    or box["y"] + box["height"] > viewport["height"] - margin:
                return False
        return True

    for _ in range(max_clicks):
        if all_inside():
            return
        page.get_by_role("button", name="zoom_out").click()
        page.wait_for_timeout(250)  # the zoom animates
    assert all_inside(), f"the asset graph does not fit the window even zoomed out: {labels}"


def open_launchpad(page, job: str, partition: str) -> None:
    """Jobs → `job` → Launchpad, with `partition` picked in the partition picker."""
    from playwright.sync_api import expect

    page.goto("/jobs")
    page.locator("a", has_text=re.compile(f"^{job}$")).click()
    page.get_by_role("tab", name="Launchpad").click()
    picker = page.get_by_placeholder("Partition")
    picker.click()
    picker.fill(partition)
    page.get_by_role("menuitem", name=partition, exact=True).click()
    expect(page.get_by_text(f"partition: {partition}")).to_be_visible()  # the run's tags now name it


def launch_run(page) -> str:
    """Click the launchpad's Launch Run once its config has no errors; returns the run ID of the run page it opens."""
    from playwright.sync_api import expect

    expect(page.get_by_text("No errors", exact=True)).to_be_visible()
    page.get_by_role("button", name="Launch Run").click()
    expect(page).to_have_url(re.compile(r"/runs/[0-9a-f-]{36}"))
    return run_id_from_url(page.url)


def filter_runs_by_tag(page, key: str, value: str):
    """Runs → Filter → Tag → key → value, picked in the menus; returns the listed runs' ID links, newest first."""
    from playwright.sync_api import expect

    page.goto("/runs")
    settle(page)
    filter_button = page.get_by_role("button", name=re.compile(r"Filter$"))  # not a tag's "Add tag to filter"
    filter_button.click()
    search = page.get_by_role("combobox", name="Search filters")
    for item in ("Tag", key, value):
        if item != "Tag":
            search.fill(item)  # the lists of tag keys and values scroll: narrow them down
        page.get_by_role("menuitem").filter(has_text=re.compile(f"^{re.escape(item)}$")).first.click()
        page.mouse.move(0, 0)  # when the menu shrinks, a run's tag under the pointer pops up over the menu
    filter_button.click()  # closes the filter menu
    expect(page).to_have_url(re.compile(re.escape(quote(f"tag:{key}={value}", safe=""))))
    settle(page)
    return page.get_by_role("link").filter(has_text=re.compile(r"^[0-9a-f]{8}$"))


def metadata_value(page, label: str):
    """The value cell of one entry in a metadata table (a row: label, value)."""
    return page.locator("tr").filter(has=page.get_by_text(label, exact=True)).locator("td").nth(1)


def visible_text(page, text: str):
    """The visible elements whose text is exactly `text` (Dagster's MiddleTruncate keeps a hidden copy to measure)."""
    return page.get_by_text(text, exact=True).filter(visible=True)


def wait_for_run_to_finish(page, timeout_s: float = 120) -> str:
    """On a run page (/runs/<id>): wait until the header's status tag is final and return it."""
    status = page.get_by_text(FINAL_STATUS).first
    status.wait_for(state="visible", timeout=timeout_s * 1000)
    return status.inner_text().strip()


def run_id_from_url(url: str) -> str:
    match = re.search(r"/runs/([0-9a-f-]{36})", url)
    assert match, f"not a run page: {url}"
    return match.group(1)
