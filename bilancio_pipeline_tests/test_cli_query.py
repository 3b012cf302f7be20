"""The query commands (`jobs`, `metrics query`, `artifacts`, `report`) against stores filled by a
real sweep: SQLite, the real PostgreSQL, Supabase REST at the HTTP transport, and artifacts on a
local folder and on a real S3 server."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import socket
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
import pytest
import tenacity
from click.testing import CliRunner

from bilancio_pipeline.cli.jobs import LS_COLUMNS
from bilancio_pipeline.cli.main import cli
from bilancio_pipeline.cli.results import PAIR_COLUMNS
from bilancio_pipeline.compute.base import Compute
from bilancio_pipeline.compute.local import run_task
from bilancio_pipeline.reports.sweep_report import render_sweep_report
from bilancio_pipeline.storage.artifacts.local import LocalArtifactStore
from bilancio_pipeline.storage.schema import RUN_RESULTS_COLUMNS
from bilancio_pipeline.storage.sql import SqlStore
from bilancio_pipeline.sweeps import lifecycle
from bilancio_pipeline.sweeps.batch import run_batch
from bilancio_pipeline.sweeps.spec import SweepSpec, expand, validate
from bilancio_pipeline.sweeps.summary import summarize
from bilancio_pipeline_tests.fixtures.fake_postgrest import FakePostgrest

JOB = "castle-river-mountain"
PENDING_JOB = "quiet-blue-lake"
GRID = ("kappa", "concentration", "mu", "outside_mid_ratio", "seed")
REST_URL = "https://project-ref.supabase.co"
REST_KEY = "sb-test-service-key-0123456789abcdef"


# --- one real sweep per session, copied into a fresh store of each backend per test ---------


class InProcessCompute(Compute):
    """The local pool's own task function, run in this process (no worker start-up in tests)."""

    name = "in-process"

    def run_batch(self, tasks, artifacts_root):
        for task in tasks:
            yield run_task(task, artifacts_root)


@dataclass
class Sweep:
    jobs: list
    runs: list
    metrics: list
    events: list
    job_metrics: list
    volume: Path  # LocalArtifactStore root holding the runs' artifacts


@pytest.fixture(scope="session")
def sweep(tmp_path_factory) -> Sweep:
    home = tmp_path_factory.mktemp("sweep")
    store, artifacts = SqlStore(f"sqlite:///{home / 'bilancio.db'}"), LocalArtifactStore(home / "volume")
    spec = validate(SweepSpec(
        job_id=JOB, sweep_type="balanced", n_agents=10, maturity_days=5, kappas=(0.25, 1.0, 4.0),
        concentrations=(0.5, 2.0), mus=(0.0, 1.0), seeds=(1,), description="κ × c × μ test grid",
    ))
    run_ids = lifecycle.register_sweep(store, spec, expand(spec))
    result = run_batch(store, artifacts, InProcessCompute(), run_ids)
    assert not result.failed, result.failed
    store.upsert_runs(result.runs)
    store.upsert_metrics(result.metrics)
    store.upsert_runs(result.artifacts)
    lifecycle.record_progress(store, JOB, {"runs": len(run_ids)})
    summary = summarize(store, JOB)
    store.save_job_metrics(summary.row)
    lifecycle.finish_job(store, JOB, summary.row)
    # A second sweep, registered but never run: newest and pending.
    pending = validate(SweepSpec(job_id=PENDING_JOB, sweep_type="ring", regime="active", n_agents=10,
                                 maturity_days=5, kappas=(0.5,), seeds=(3,)))
    lifecycle.register_sweep(store, pending, expand(pending))
    jobs = store.list_jobs()
    runs = [r for j in jobs for r in store.list_runs(j["job_id"])]
    snapshot = Sweep(
        jobs=jobs, runs=runs, metrics=store.get_metrics([r["run_id"] for r in runs]),
        events=[{k: v for k, v in e.items() if k != "id"} for j in jobs for e in store.list_events(j["job_id"])],
        job_metrics=[m for j in jobs if (m := store.get_job_metrics(j["job_id"]))], volume=home / "volume",
    )
    store.close()
    return snapshot


def fill(store, sweep: Sweep) -> None:
    for job in sweep.jobs:
        store.save_job(job)
    store.upsert_runs(sweep.runs)
    store.upsert_metrics(sweep.metrics)
    store.log_events(sweep.events)
    for row in sweep.job_metrics:
        store.save_job_metrics(row)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for name in list(os.environ):
        if name.startswith("BILANCIO_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("BILANCIO_HOME", str(tmp_path / "home"))


@pytest.fixture(params=["sqlite", "postgres", "rest"])
def backend(request, sweep, monkeypatch):
    """A store of each kind filled with the sweep, and the CLI pointed at it by environment."""
    if request.param == "rest":
        import bilancio_pipeline.storage.rest as rest

        server = FakePostgrest(key=REST_KEY)

        class TransportRestStore(rest.RestStore):  # the real client, its HTTP answered by the fake
            def __init__(self, url, key, **kwargs):
                super().__init__(url, key, http_client=server.client(), wait=tenacity.wait_none(), **kwargs)

        monkeypatch.setattr(rest, "RestStore", TransportRestStore)
        monkeypatch.setenv("BILANCIO_SUPABASE_URL", REST_URL)
        monkeypatch.setenv("BILANCIO_SUPABASE_KEY", REST_KEY)
        store = TransportRestStore(REST_URL, REST_KEY)
        store.requests = server.requests
    else:
        url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")
        monkeypatch.setenv("BILANCIO_SUPABASE_DB_URL", url)
        store = SqlStore(url)
    fill(store, sweep)
    yield store
    store.close()


def run(*args, ok=True):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert "Traceback" not in result.output
    if ok:
        assert result.exit_code == 0, result.output
    return result


def as_json(*args):
    return json.loads(run(*args, "--format", "json").stdout)


def as_csv(*args):
    return list(csv.DictReader(io.StringIO(run(*args, "--format", "csv").stdout)))


def completed_runs(sweep):
    metrics = {m["run_id"]: m for m in sweep.metrics}
    return [{**r, **metrics[r["run_id"]]} for r in sweep.runs if r["job_id"] == JOB]


def assert_right_aligned(table: str, column: str) -> None:
    """Every value of a numeric column ends exactly where its header ends."""
    lines = table.split("\n\n")[0].splitlines()  # the table ends at the first blank line
    header = lines[0]
    end = re.search(rf"\b{column}\b", header).end()
    rows = lines[2:]
    assert rows
    for line in rows:
        assert line[end - 1] != " " and (len(line) == end or line[end] == " "), (column, line)


# --- jobs ----------------------------------------------------------------------------------


def test_jobs_ls(backend, sweep):
    table = run("jobs", "ls").stdout
    assert table.splitlines()[0].split()[:2] == ["JOB", "ID"]
    assert table.index(PENDING_JOB) < table.index(JOB)  # newest first
    assert "Total: 2 jobs" in table
    assert_right_aligned(table, "RUNS")

    listed = as_json("jobs", "ls")
    assert [j["job_id"] for j in listed] == [PENDING_JOB, JOB]
    assert all(list(j) == list(LS_COLUMNS) for j in listed)
    done = listed[1]
    assert done["status"] == "completed" and done["total_runs"] == done["completed_runs"] == 24
    assert datetime.fromisoformat(done["created_at"]).utcoffset().total_seconds() == 0
    assert done["duration_s"] > 0 and listed[0]["duration_s"] is None

    assert [j["job_id"] for j in as_json("jobs", "ls", "--status", "completed")] == [JOB]
    assert [j["job_id"] for j in as_json("jobs", "ls", "--limit", "1")] == [PENDING_JOB]
    rows = as_csv("jobs", "ls", "--status", "pending")
    assert [(r["job_id"], r["status"], r["completed_at"]) for r in rows] == [(PENDING_JOB, "pending", "")]
    assert "No jobs found." in run("jobs", "ls", "--status", "failed").stdout


def test_jobs_get(backend, sweep):
    got = as_json("jobs", "get", JOB)
    assert got["job"]["job_id"] == JOB and got["job"]["kappas"] == [0.25, 1.0, 4.0]
    assert got["job"]["spec"]["concentrations"] == [0.5, 2.0]
    assert got["run_counts"]["completed"] == 24 and got["run_counts"]["failed"] == 0
    assert [e["event_type"] for e in got["events"]][:2] == ["created", "started"]
    assert got["events"][-1]["event_type"] == "completed"
    assert got["job_metrics"]["n_pairs"] == 12

    text = run("jobs", "get", JOB).stdout
    assert re.search(r"^kappas\s+0\.25, 1, 4$", text, re.MULTILINE)
    assert "Runs by status: completed 24" in text
    assert re.search(r"^n_pairs\s+12$", text, re.MULTILINE)

    missing = run("jobs", "get", "no-such-job", ok=False)
    assert missing.exit_code == 1 and "Error: job not found: no-such-job" in missing.output


def test_jobs_runs(backend, sweep):
    runs = as_json("jobs", "runs", JOB)
    assert len(runs) == 24 and all(list(r) == list(RUN_RESULTS_COLUMNS) for r in runs)
    expected = {r["run_id"]: r["delta_total"] for r in completed_runs(sweep)}
    assert {r["run_id"]: r["delta_total"] for r in runs} == expected
    keys = [(*(r[c] for c in GRID), r["regime"] != "passive") for r in runs]
    assert keys == sorted(keys)  # grid order, passive before active

    table = run("jobs", "runs", JOB).stdout
    assert "Total: 24 runs" in table and all(r["run_id"] in table for r in runs)
    assert_right_aligned(table, "delta_total")
    assert as_json("jobs", "runs", JOB, "--status", "failed") == []
    assert len(as_csv("jobs", "runs", PENDING_JOB, "--status", "pending")) == 1
    assert run("jobs", "runs", "nope", ok=False).exit_code == 1


def test_jobs_metrics(backend, sweep):
    out = as_json("jobs", "metrics", JOB)
    runs = {(*(r[c] for c in GRID), r["regime"]): r["delta_total"] for r in completed_runs(sweep)}
    assert len(out["pairs"]) == out["job_metrics"]["n_pairs"] == 12
    for pair in out["pairs"]:
        cell = tuple(pair[c] for c in GRID)
        assert pair["delta_passive"] == pytest.approx(runs[(*cell, "passive")])
        assert pair["delta_active"] == pytest.approx(runs[(*cell, "active")])
        assert pair["trading_effect"] == pytest.approx(pair["delta_passive"] - pair["delta_active"])
    effects = [p["trading_effect"] for p in out["pairs"]]
    assert out["job_metrics"]["mean_trading_effect"] == pytest.approx(sum(effects) / len(effects))

    rows = as_csv("jobs", "metrics", JOB)
    assert list(rows[0])[:len(PAIR_COLUMNS)] == list(PAIR_COLUMNS) and len(rows) == 12
    table = run("jobs", "metrics", JOB).stdout
    assert "24 completed runs, 12 passive/active pairs" in table and "mean_trading_effect" in table


# --- metrics query -------------------------------------------------------------------------


def test_metrics_query_filters_order_limit(backend, sweep):
    everything = completed_runs(sweep)
    got = as_json("metrics", "query", "--where", "kappa < 1 and delta_total > 0.1", "--limit", 0)
    expected = {r["run_id"] for r in everything if r["kappa"] < 1 and r["delta_total"] > 0.1}
    assert expected and {r["run_id"] for r in got} == expected

    where = "regime = 'active' and (kappa = 0.25 or mu >= 1) and not concentration = 2"
    got = as_json("metrics", "query", "--job", JOB, "--where", where, "--order-by", "-delta_total")
    expected = [r for r in everything if r["regime"] == "active" and (r["kappa"] == 0.25 or r["mu"] >= 1)
                and not r["concentration"] == 2]
    assert {r["run_id"] for r in got} == {r["run_id"] for r in expected}
    assert [r["delta_total"] for r in got] == sorted((r["delta_total"] for r in expected), reverse=True)

    got = as_json("metrics", "query", "--job", JOB, "--where", "seed < 1.5 and n_defaults >= 0.5", "--limit", 0)
    assert {r["run_id"] for r in got} == {r["run_id"] for r in everything if r["n_defaults"] >= 0.5}

    top = as_json("metrics", "query", "--job", JOB, "--order-by", "delta_total:asc", "--limit", 3)
    assert [r["delta_total"] for r in top] == sorted(r["delta_total"] for r in everything)[:3]
    active = as_csv("metrics", "query", "--job", JOB, "--regime", "active", "--columns", "run_id,regime,kappa", "--limit", 0)
    assert list(active[0]) == ["run_id", "regime", "kappa"] and len(active) == 12
    assert {r["regime"] for r in active} == {"active"}
    assert as_json("metrics", "query", "--job", PENDING_JOB, "--where", "delta_total != null") == []

    table = run("metrics", "query", "--where", "kappa = 4", "--order-by", "phi_total", "--limit", 2).stdout
    assert "2 runs (more match" in table
    assert_right_aligned(table, "phi_total")
    assert run("metrics", "query", "--job", "nope", ok=False).exit_code == 1


def test_metrics_query_values_are_data(backend, sweep):
    # Strings full of PostgREST and SQL syntax match nothing and break nothing.
    for text in ("),or=(", "x.y,z", "1' or 1=1 --", 'a"b\\c'):
        quote = '"' if "'" in text else "'"
        value = text.replace(quote, quote * 2)
        assert as_json("metrics", "query", "--where", f"regime = {quote}{value}{quote} or run_id = 'none'") == []
        assert as_json("metrics", "query", "--where", f"regime = {quote}{value}{quote}") == []
    attempt = run("metrics", "query", "--where", "kappa < 0.5; drop table runs", ok=False)
    assert attempt.exit_code == 1
    assert len(as_json("metrics", "query", "--limit", 0)) == 25  # nothing was dropped


def test_bad_where_points_at_the_mistake(backend):
    result = run("metrics", "query", "--where", "kappa < 0.5 and delta_totl > 0.1", ok=False)
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0].startswith("Error: bad --where expression: unknown column 'delta_totl' (did you mean delta_total?)")
    assert lines[1] == "  kappa < 0.5 and delta_totl > 0.1" and lines[2] == "  " + " " * 16 + "^"
    assert "columns:" in result.output and "phi_total" in result.output

    result = run("metrics", "query", "--where", "kappa <", ok=False)
    assert result.exit_code == 1 and "ends too early" in result.output and "^" in result.output


@pytest.mark.parametrize("args", [
    ["jobs", "ls", "--limit", "0"],
    ["jobs", "ls", "--status", "bogus"],
    ["jobs", "ls", "--format", "xml"],
    ["jobs", "get"],
    ["metrics", "query", "--order-by", "nope"],
    ["metrics", "query", "--order-by", "kappa:sideways"],
    ["metrics", "query", "--columns", "run_id,nope"],
    ["metrics", "query", "--regime", "both"],
    ["artifacts", "url", JOB],
    ["artifacts", "download", JOB, "--bogus"],
])
def test_bad_flags_are_usage_errors(args):
    result = run(*args, ok=False)
    assert result.exit_code == 2 and "Usage:" in result.output


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_backends_give_a_clean_error(monkeypatch):
    monkeypatch.setenv("BILANCIO_SUPABASE_DB_URL", f"postgresql://bilancio:hunter2secret@127.0.0.1:{_free_port()}/db")
    result = run("jobs", "ls", ok=False)
    assert result.exit_code == 1 and result.output.startswith("Error: ")
    assert "hunter2secret" not in result.output

    import bilancio_pipeline.storage.rest as rest

    def refuse(request):
        raise httpx.ConnectError("connection refused", request=request)

    class DownRestStore(rest.RestStore):
        def __init__(self, url, key, **kwargs):
            kwargs["deadline_s"] = 0.5  # retries end quickly; the CLI never waits longer than its cap
            super().__init__(url, key, http_client=httpx.Client(transport=httpx.MockTransport(refuse)),
                             wait=tenacity.wait_none(), **kwargs)

    monkeypatch.delenv("BILANCIO_SUPABASE_DB_URL")
    monkeypatch.setattr(rest, "RestStore", DownRestStore)
    monkeypatch.setenv("BILANCIO_SUPABASE_URL", REST_URL)
    monkeypatch.setenv("BILANCIO_SUPABASE_KEY", REST_KEY)
    result = run("metrics", "query", ok=False)
    assert result.exit_code == 1 and "Error: the results store failed" in result.output
    assert REST_KEY not in result.output


@pytest.mark.parametrize("backend", ["rest"], indirect=True)
def test_rest_filters_reach_the_wire_as_postgrest_params(backend):
    backend.requests.clear()
    as_json("metrics", "query", "--where", "kappa < 1 and (mu = 0 or regime = 'a,b')")
    (request,) = [r for r in backend.requests if r.url.path.endswith("/run_results")]
    assert ("kappa", "lt.1") in request.url.params.multi_items()
    assert ("or", '(mu.eq.0,regime.eq."a,b")') in request.url.params.multi_items()


# --- artifacts -----------------------------------------------------------------------------


def _run_files(volume: Path, run_id: str) -> dict[str, bytes]:
    base = volume / JOB / "runs" / run_id
    return {p.relative_to(base).as_posix(): p.read_bytes() for p in base.rglob("*") if p.is_file()}


@pytest.fixture
def local_artifacts(sweep, monkeypatch, tmp_path):
    home = tmp_path / "artifact-home"
    shutil.copytree(sweep.volume, home / "volume")
    monkeypatch.setenv("BILANCIO_HOME", str(home))
    monkeypatch.setenv("BILANCIO_SUPABASE_DB_URL", f"sqlite:///{home / 'bilancio.db'}")
    with SqlStore(f"sqlite:///{home / 'bilancio.db'}") as store:
        fill(store, sweep)
    return sweep.volume


def test_artifacts_download_local(local_artifacts, sweep, tmp_path):
    run_id = next(r["run_id"] for r in sweep.runs if r["job_id"] == JOB and r["regime"] == "active")
    result = run("artifacts", "download", JOB, "--run", run_id, "--out", tmp_path / "one")
    expected = _run_files(local_artifacts, run_id)
    assert {"scenario.yaml", "out/events.jsonl", "run.html"} <= set(expected)
    base = tmp_path / "one" / "runs" / run_id
    assert {p.relative_to(base).as_posix(): p.read_bytes() for p in base.rglob("*") if p.is_file()} == expected
    assert f"Downloading {len(expected)} files" in result.stderr
    assert f"Downloaded {len(expected)} files" in result.stdout

    run("artifacts", "download", JOB, "--out", tmp_path / "all")
    assert sorted(p.name for p in (tmp_path / "all" / "runs").iterdir()) == sorted(
        r["run_id"] for r in sweep.runs if r["job_id"] == JOB)

    link = run("artifacts", "url", JOB, run_id, "out/events.jsonl").stdout.strip()
    assert Path(link.removeprefix("file://")).read_bytes() == expected["out/events.jsonl"]

    for args, message in (
        (("artifacts", "download", JOB, "--run", "nope"), "run not found in job"),
        (("artifacts", "download", "nope"), "job not found: nope"),
        (("artifacts", "download", PENDING_JOB), "no artifacts are stored"),
        (("artifacts", "url", JOB, run_id, "missing.txt"), "out/events.jsonl"),
    ):
        failed = run(*args, ok=False)
        assert failed.exit_code == 1 and message in failed.output


def test_artifacts_on_s3(sweep, s3_server, s3_bucket, monkeypatch, tmp_path):
    from bilancio_pipeline.storage.artifacts.s3 import S3ArtifactStore

    monkeypatch.setenv("BILANCIO_SUPABASE_DB_URL", f"sqlite:///{tmp_path / 'bilancio.db'}")
    with SqlStore(f"sqlite:///{tmp_path / 'bilancio.db'}") as store:
        fill(store, sweep)
    s3 = S3ArtifactStore(s3_bucket, s3_server.endpoint_url, s3_server.access_key, s3_server.secret_key)
    run_ids = sorted(r["run_id"] for r in sweep.runs if r["job_id"] == JOB)[:3]
    for run_id in run_ids:
        s3.upload_run(JOB, run_id, sweep.volume / JOB / "runs" / run_id)
    for name, value in (("BILANCIO_R2_BUCKET", s3_bucket), ("BILANCIO_R2_ENDPOINT_URL", s3_server.endpoint_url),
                        ("BILANCIO_R2_ACCESS_KEY_ID", s3_server.access_key),
                        ("BILANCIO_R2_SECRET_ACCESS_KEY", s3_server.secret_key)):
        monkeypatch.setenv(name, value)

    result = run("artifacts", "download", JOB, "--out", tmp_path / "dl")
    for run_id in run_ids:
        base = tmp_path / "dl" / "runs" / run_id
        assert {p.relative_to(base).as_posix(): p.read_bytes() for p in base.rglob("*") if p.is_file()} == \
            _run_files(sweep.volume, run_id)
    assert "Downloading" in result.stderr

    link = run("artifacts", "url", JOB, run_ids[0], "scenario.yaml", "--expires", 120).stdout.strip()
    assert link.startswith(s3_server.endpoint_url) and "X-Amz-Expires=120" in link
    assert s3_server.secret_key not in link
    assert httpx.get(link).content == _run_files(sweep.volume, run_ids[0])["scenario.yaml"]


# --- report --------------------------------------------------------------------------------


def test_report_is_self_contained_html(backend, sweep, tmp_path):
    out = tmp_path / "reports" / "sweep.html"
    result = run("report", JOB, "--out", out)
    assert str(out) in result.stdout and "12 pairs" in result.stdout
    html = out.read_text(encoding="utf-8")
    assert html.startswith("<!doctype html>") and f"Sweep {JOB}" in html
    assert len(re.findall(r"<img alt='[^']+' src='data:image/png;base64,[A-Za-z0-9+/=]{500,}'>", html)) == 3
    assert not re.search(r"""(src|href)=['"]?(https?:)?//""", html)  # nothing to fetch: opens offline
    assert "<h2>Trading effect per pair</h2>" in html and "<h2>job_metrics</h2>" in html
    pairs_table = html[html.index("<h2>Pairs</h2>"):]
    assert pairs_table.count("<tr>") == 13  # header + 12 pairs
    assert run("report", "nope", ok=False).exit_code == 1


def test_render_sweep_report_escapes_and_handles_no_results():
    job = {"job_id": "x<script>", "status": "pending", "description": "<b>bold</b>", "kappas": [0.5]}
    html = render_sweep_report(job, [], None, [])
    assert "<script>" not in html and "&lt;b&gt;bold&lt;/b&gt;" in html
    assert "No completed runs with metrics yet." in html and "<img" not in html


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def test_report_opens_offline_in_a_browser(local_artifacts, tmp_path):
    from playwright.sync_api import sync_playwright

    out = tmp_path / "report.html"
    run("report", JOB, "--out", out)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            requested = []
            page.on("request", lambda request: requested.append(request.url))
            page.goto(out.as_uri())
            widths = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)")
            title = page.title()
            pair_rows = page.locator("h2:has-text('Pairs') + table tr").count()
        finally:
            browser.close()
    assert title == f"Sweep {JOB}"
    assert len(widths) == 3 and all(w > 300 for w in widths)  # every figure decoded and drawn
    assert [u for u in requested if not u.startswith(("file:", "data:"))] == []  # nothing from the network
    assert pair_rows == 13
