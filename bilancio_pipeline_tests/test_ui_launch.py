"""Launch a sweep from the Dagster UI in a real browser, and follow it to its job_metrics.

`dagster dev` (webserver + daemon, our instance config, embedded stores) serves the UI; headless
Chromium opens the Launchpad of `launch_sweep_job`, replaces the config with a small balanced
sweep and clicks Launch Run. From there the daemon's sensors must carry the sweep on their own:
the batch run, then job_metrics. Run states come from the webserver's GraphQL API (the Runs page
polls, so reading it would be slower and flakier), the results from the store.

Then it reads the sweep as a researcher would: a run partition's page shows that run's κ and δ,
job_metrics its fields, sweep_report its plot inline and a report link that opens (the volume is
served over http beside the UI by `bilancio-pipeline ui`, which this test runs). Last, a spec with
three bad fields launched from the Launchpad: its run page names all three in one line and in a
table. Screenshots go to the folder the test prints (BILANCIO_SCREENSHOTS, else the test's
temporary folder).

Every wait is on a condition (an element, a URL, a run status); the bounds are for a busy 2-core
machine, not the expected times.
"""

import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, sync_playwright

from bilancio_pipeline.benchmarks.dagster_server import TERMINAL_RUN_STATUSES
from bilancio_pipeline.storage.config import open_store

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
JOB_ID = "ui-sweep"
SWEEP_YAML = f"""ops:
  launch_sweep:
    config:
      sweep_type: balanced
      n_agents: 10
      maturity_days: 5
      kappas: [0.5, 1]
      seeds: [1]
      job_id: {JOB_ID}
"""  # 2 kappas x 1 seed x 2 regimes = 4 runs, 2 passive/active pairs
SWEEP_TIMEOUT = 240  # seconds from the click to job_metrics
PAGE_TIMEOUT_MS = 90_000  # for any one page condition; Playwright's default of 30 s is tight for the UI under load
BAD_JOB_ID = "ui-bad-sweep"
BAD_SPEC_YAML = f"""ops:
  launch_sweep:
    config:
      n_agents: 10
      maturity_days: 5
      kappas: [-1]
      mus: [0, 1.5]
      seeds: []
      job_id: {BAD_JOB_ID}
"""  # well-typed, so the editor lets it through; the launch refuses it
BAD_FIELDS = ("kappas", "mus", "seeds")


def _screenshots(tmp_path) -> Path:
    folder = Path(os.environ.get("BILANCIO_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    print(f"screenshots: {folder}")
    return folder


def _editor_text(page: Page) -> str:
    return page.evaluate("() => document.querySelector('.CodeMirror').CodeMirror.getValue()")


def _open_launchpad(page: Page, base_url: str) -> None:
    page.goto(f"{base_url}/locations/bilancio_pipeline.definitions/jobs/launch_sweep_job/playground")
    page.locator(".CodeMirror").wait_for()
    # The Launchpad first fills the editor with the form's defaults; wait for them, then replace them.
    page.wait_for_function("() => document.querySelector('.CodeMirror').CodeMirror.getValue().includes('launch_sweep')")


def _replace_config(page: Page, yaml_text: str) -> None:
    """Select all and put the text in its place in one edit, as a paste does (CodeMirror's
    auto-indent stays out of it, and the editor never holds an empty config in between)."""
    page.locator(".CodeMirror").click()
    page.keyboard.press("Control+A")
    page.keyboard.insert_text(yaml_text)
    assert _editor_text(page) == yaml_text


def _launch(page: Page) -> str:
    """Click Launch Run; the UI moves to the new run's page. Returns the run id."""
    page.get_by_role("button", name="Launch Run").click()
    page.wait_for_url("**/runs/**")
    return page.url.split("/runs/", 1)[1].split("?", 1)[0]


def _launch_from_launchpad(page: Page, base_url: str, screenshot) -> str:
    _open_launchpad(page, base_url)
    # A choice the form does not offer is refused in the editor, before anything is launched.
    _replace_config(page, SWEEP_YAML.replace("balanced", "circle"))
    page.get_by_text("not in enum type SweepType got circle").wait_for()
    _replace_config(page, SWEEP_YAML)
    # The error above goes once the editor has validated this config against SweepConfig.
    page.get_by_text("No errors").wait_for()
    page.screenshot(path=screenshot)
    return _launch(page)


def _sweep_runs(server) -> dict[str, list[dict]]:
    by_job: dict[str, list[dict]] = {}
    for run in server.runs():
        by_job.setdefault(run["jobName"], []).append(run)
    return by_job


def _finished(server):
    """All runs once job_metrics_job's run for the sweep has ended, else None."""
    runs = _sweep_runs(server)
    metrics_runs = [r for r in runs.get("job_metrics_job", []) if r["tags"].get("dagster/partition") == JOB_ID]
    if any(r["status"] in TERMINAL_RUN_STATUSES for r in metrics_runs):
        return runs
    if any(r["status"] == "FAILURE" for group in runs.values() for r in group):
        return runs  # something failed: no point waiting for the rest
    return None


def test_sweep_launched_from_the_launchpad_runs_to_job_metrics(bilancio_ui, tmp_path):
    # `bilancio-pipeline ui` itself: dagster dev, and the results volume served over http beside it
    dagster_dev, shots = bilancio_ui, _screenshots(tmp_path)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        context.set_default_timeout(PAGE_TIMEOUT_MS)  # the report's tab too
        try:
            page = context.new_page()
            skip = page.get_by_role("button", name="Skip")  # the one-time newsletter dialog
            page.add_locator_handler(skip, lambda: skip.click())
            launched_id = _launch_from_launchpad(page, dagster_dev.url, shots / "launchpad.png")
            launched_url = page.url

            runs = dagster_dev.wait_for(lambda: _finished(dagster_dev), timeout=SWEEP_TIMEOUT,
                                        what=f"the job_metrics run of {JOB_ID}")
            page.goto(launched_url)  # the launch run links to its sweep
            page.get_by_text("runs_to_run").first.wait_for()
            page.get_by_role("link", name="/assets/job_metrics?view=partitions&partition=ui-sweep").first.wait_for()

            run, metrics = _a_run_of_the_sweep(dagster_dev)
            _read_run_partition(page, dagster_dev.url, run, metrics, shots / "run_partition.png")

            page.goto(f"{dagster_dev.url}/assets/job_metrics?partition={JOB_ID}")
            page.get_by_text(JOB_ID).first.wait_for()  # the latest materialization is this sweep's
            page.get_by_text("mean_delta_passive").first.wait_for()  # every field, not just n_pairs
            page.screenshot(path=shots / "job_metrics.png", full_page=True)

            report_url = _open_report(page, dagster_dev.url, shots)
            _bad_spec_refused_in_one_line(page, dagster_dev, shots / "spec_error.png")
        except BaseException:
            _keep_what_the_tabs_show(context, shots)
            raise
        finally:
            browser.close()

    statuses = {job: [r["status"] for r in group] for job, group in runs.items()}
    (launch,) = runs["launch_sweep_job"]  # exactly the one run the button started
    assert launch["runId"] == launched_id
    assert launch["status"] == "SUCCESS", statuses
    assert launch["tags"]["bilancio/job_id"] == JOB_ID
    batches = runs.get("sweep_batch_job", [])
    assert batches and all(r["status"] == "SUCCESS" for r in batches), statuses
    assert all(r["tags"]["bilancio/job_id"] == JOB_ID for r in batches)
    (metrics_run,) = runs["job_metrics_job"]
    assert metrics_run["status"] == "SUCCESS", statuses
    assert report_url.startswith("http://127.0.0.1:")
    # The checks count as evaluated against the materializations they checked.
    for asset in ("run_metrics", "job_metrics"):
        statuses = _latest_check_statuses(dagster_dev, asset)
        assert statuses and set(statuses.values()) == {"SUCCEEDED"}, (asset, statuses)

    store = open_store(home=dagster_dev.bilancio_home)
    try:
        job = store.get_job(JOB_ID)
        assert job["status"] == "completed" and job["total_runs"] == 4 and job["completed_runs"] == 4
        assert job["spec"]["kappas"] == [0.5, 1.0] and job["n_agents"] == 10 and job["maturity_days"] == 5
        assert job["executor"] == "local"  # the form left it empty: the configured one
        aggregate = store.get_job_metrics(JOB_ID)
        assert aggregate is not None and aggregate["n_pairs"] == 2
        db_runs = store.list_runs(JOB_ID)
        assert len(db_runs) == 4 and {r["status"] for r in db_runs} == {"completed"}
        assert sorted(r["regime"] for r in db_runs) == ["active", "active", "passive", "passive"]
        metrics = store.get_metrics([r["run_id"] for r in db_runs])
        assert len(metrics) == 4 and all(0 <= m["delta_total"] <= 1 for m in metrics)
        # The batch runs covered exactly the sweep's runs, as contiguous partition ranges.
        covered = {r["tags"]["dagster/asset_partition_range_start"] for r in batches}
        assert covered <= {r["run_id"] for r in db_runs}
        assert BAD_JOB_ID not in {j["job_id"] for j in store.list_jobs()}  # the bad spec wrote nothing
    finally:
        store.close()


def _keep_what_the_tabs_show(context, shots: Path) -> None:
    """On a failure, a screenshot of every open tab, so the page the test gave up on can be seen."""
    for number, tab in enumerate(context.pages):
        path = shots / f"failure-{number}.png"
        try:
            tab.screenshot(path=path, full_page=True, timeout=15_000)
            print(f"failed on {tab.url}: {path}")
        except Exception as exc:  # a crashed or hung tab: its address still helps
            print(f"failed on {tab.url} (no screenshot: {exc})")


_CHECKS = """query Checks($key: AssetKeyInput!) { assetNodeOrError(assetKey: $key) { ... on AssetNode {
  assetChecksOrError { ... on AssetChecks { checks { name executionForLatestMaterialization { status } } } } } } }"""


def _latest_check_statuses(server, asset: str) -> dict[str, str | None]:
    """What the asset's Checks tab shows for its latest materialization (None: "Not evaluated")."""
    node = server.graphql(_CHECKS, {"key": {"path": [asset]}})["assetNodeOrError"]
    return {c["name"]: (c["executionForLatestMaterialization"] or {}).get("status")
            for c in node["assetChecksOrError"]["checks"]}


def _a_run_of_the_sweep(server) -> tuple[dict, dict]:
    store = open_store(home=server.bilancio_home)
    try:
        run = next(r for r in store.list_runs(JOB_ID) if r["regime"] == "passive" and r["kappa"] == 0.5)
        return run, store.get_metrics([run["run_id"]])[0]
    finally:
        store.close()


def _read_run_partition(page: Page, base_url: str, run: dict, metrics: dict, screenshot) -> None:
    """Click the run's partition on run_metrics' partitions page and read its κ and δ there."""
    page.goto(f"{base_url}/assets/run_metrics?view=partitions")
    page.locator("span", has_text=run["run_id"]).first.click()
    page.wait_for_url(f"**partition={run['run_id']}")
    label = f"passive · κ {run['kappa']:g}"
    page.get_by_text(label).first.wait_for()  # the run spelled out, whatever the UI cuts of its key
    delta = float(f"{metrics['delta_total']:.4g}")
    row = page.locator("tr", has_text="delta_total").first
    row.wait_for()
    assert str(delta) in row.inner_text(), row.inner_text()
    assert f"{run['kappa']:g}" in page.locator("tr", has_text="kappa").first.inner_text()
    page.screenshot(path=screenshot, full_page=True)


def _open_report(page: Page, base_url: str, shots: Path) -> str:
    """sweep_report's page shows the plot inline; its report link opens the sweep's report."""
    page.goto(f"{base_url}/assets/sweep_report?partition={JOB_ID}")
    plot = page.locator("img[alt^='mean δ by κ']").first
    plot.wait_for()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=plot.element_handle())
    page.screenshot(path=shots / "sweep_report.png", full_page=True)
    link = page.locator("a[href$='/report.html']").first
    href = link.get_attribute("href")
    with page.context.expect_page() as opened:
        link.click()
    report = opened.value
    report.wait_for_load_state()
    report.get_by_text(f"Sweep {JOB_ID}").first.wait_for()
    report.screenshot(path=shots / "report.png")
    return href


def _bad_spec_refused_in_one_line(page: Page, server, screenshot) -> None:
    """A spec with three bad fields, launched from the Launchpad: the launch run fails, and its
    page names every bad field in the failure's one-line message and in a table of its own (Dagster
    adds its stack trace below them; see defs/jobs.py)."""
    _open_launchpad(page, server.url)
    _replace_config(page, BAD_SPEC_YAML)
    run_id = _launch(page)
    status = server.wait_for(lambda: next((r["status"] for r in server.runs("launch_sweep_job")
                                           if r["runId"] == run_id and r["status"] in TERMINAL_RUN_STATUSES), None),
                             timeout=SWEEP_TIMEOUT, what=f"the launch run of {BAD_JOB_ID} to end")
    assert status == "FAILURE"
    message = page.get_by_text("invalid sweep spec: ").first  # the STEP_FAILURE event's message
    message.wait_for()
    line = message.inner_text().strip()
    assert "\n" not in line and all(f"{field}: " in line for field in BAD_FIELDS), line
    for field in BAD_FIELDS:  # the failure's metadata: one row per bad field
        row = page.locator("tr", has=page.locator("td", has_text=re.compile(f"^{field}$"))).first
        row.wait_for()
        cells = row.locator("td").all_inner_texts()
        assert len(cells) == 2 and cells[1].strip(), cells  # the field, and what is wrong with it
    page.screenshot(path=screenshot)
