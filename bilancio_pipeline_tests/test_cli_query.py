"""The query commands (`jobs`, `metrics query`, `artifacts`, `report`) against stores filled by a
real sweep: SQLite, the real PostgreSQL, Supabase REST at the HTTP transport, and artifacts on a
local folder and on a real S3 server."""

from __future__ import annotations

import csv
import gzip
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
from bilancio_pipeline.engine.run_report import read_page_data
from bilancio_pipeline.engine.stats import mean_ci
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

    # the 95% t interval over the pairs, and the variance decomposition over the 3 × 2 × 2 grid
    low, high = mean_ci(effects)
    stored = out["job_metrics"]
    assert (stored["trading_effect_ci_low"], stored["trading_effect_ci_high"]) == pytest.approx((low, high))
    shares = stored["raw_summary"]["variance_decomposition"]["delta_passive"]["shares"]
    assert set(shares) == {"κ", "c", "μ", "κ×c", "κ×μ", "c×μ", "higher-order"}  # seed and ρ: one level
    assert sum(shares.values()) == pytest.approx(1.0)
    assert re.search(rf"trading_effect_ci_low\s+{re.escape(f'{low:.4g}')}", table)
    assert "Share of variance explained" in table and re.search(r"^κ\s+[0-9.]+\s+[0-9.]+\s+[0-9.]+$", table, re.M)
    assert "whose interval over seeds excludes 0: 0 of 0" in table  # one seed per cell


def test_the_original_command_names_run_as_written(backend, sweep, tmp_path):
    assert as_json("jobs", "list", "--limit", 10) == as_json("jobs", "ls", "--limit", 10)
    assert [j["job_id"] for j in as_json("jobs", "list", "--limit", 1)] == [PENDING_JOB]
    shown, got = as_json("jobs", "show", JOB), as_json("jobs", "get", JOB)
    assert shown["job"] == got["job"] and shown["run_counts"] == got["run_counts"] == {
        "pending": 0, "running": 0, "completed": 24, "failed": 0, "cancelled": 0}

    everything = completed_runs(sweep)
    rows = as_json("metrics", "query", "--min-delta", 0.1, "--max-delta", 0.6, "--regime", "passive", "--limit", 0)
    expected = {r["run_id"] for r in everything if 0.1 <= r["delta_total"] <= 0.6 and r["regime"] == "passive"}
    assert expected and {r["run_id"] for r in rows} == expected
    rows = as_json("metrics", "query", "--job", JOB, "--min-delta", 0.1, "--where", "kappa < 1 or mu = 0", "--limit", 0)
    expected = {r["run_id"] for r in everything if r["delta_total"] >= 0.1 and (r["kappa"] < 1 or r["mu"] == 0)}
    assert expected and {r["run_id"] for r in rows} == expected


def test_cloud_flag_needs_a_cloud_store(backend, monkeypatch):
    if "BILANCIO_SUPABASE_DB_URL" in os.environ and os.environ["BILANCIO_SUPABASE_DB_URL"].startswith("sqlite"):
        refused = run("jobs", "list", "--cloud", ok=False)
        assert refused.exit_code == 1 and "names a local SQLite file" in refused.output
    else:  # Postgres or Supabase REST: the cloud store answers
        assert [j["job_id"] for j in as_json("jobs", "list", "--cloud")] == [PENDING_JOB, JOB]
        assert as_json("jobs", "show", JOB, "--cloud")["job"]["job_id"] == JOB
    for name in ("BILANCIO_SUPABASE_DB_URL", "BILANCIO_SUPABASE_URL", "BILANCIO_SUPABASE_KEY"):
        monkeypatch.delenv(name, raising=False)
    for args in (("jobs", "list", "--cloud"), ("jobs", "metrics", JOB, "--cloud"), ("jobs", "compare", JOB, JOB, "--cloud")):
        refused = run(*args, ok=False)
        assert refused.exit_code == 1 and "no cloud store is configured" in refused.output
        assert "BILANCIO_SUPABASE_URL" in refused.output


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
    ["metrics", "query", "--min-delta", "nan"],
    ["metrics", "query", "--max-delta", "1.5"],
    ["jobs", "compare", JOB],
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
    """A run's files as the volume serves them (plain names and bytes; gzip is its storage detail)."""
    store, base = LocalArtifactStore(volume), f"{JOB}/runs/{run_id}/"
    return {key[len(base):]: store.get_bytes(key) for key in store.list_keys(base)}


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

    run("artifacts", "download", JOB, "--run", "all", "--output", tmp_path / "all")  # the original's spelling
    assert sorted(p.name for p in (tmp_path / "all" / "runs").iterdir()) == sorted(
        r["run_id"] for r in sweep.runs if r["job_id"] == JOB)

    link = run("artifacts", "url", JOB, run_id, "out/events.jsonl").stdout.strip()
    linked = Path(link.removeprefix("file://")).read_bytes()
    if link.endswith(".gz"):  # the local volume keeps data files gzipped; the link names the stored file
        linked = gzip.decompress(linked)
    assert linked == expected["out/events.jsonl"]

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


VIEWS = ("delta", "phi", "scatter", "effect", "heatmaps", "distributions", "parallel", "surface", "variance")


def test_report_is_self_contained_html(backend, sweep, tmp_path):
    out = tmp_path / "reports" / "sweep.html"
    result = run("report", JOB, "--out", out)
    assert str(out) in result.stdout and "12 pairs" in result.stdout
    html = out.read_text(encoding="utf-8")
    assert html.startswith("<!doctype html>") and f"Sweep {JOB}" in html
    assert not re.search(r"""(src|href)=['"]?(https?:)?//""", html)  # nothing to fetch: opens offline
    assert all(f"data-view='{view}'" in html for view in VIEWS)
    data = read_page_data(html)  # what the figures are drawn from
    assert data["levels"]["kappa"] == [0.25, 1.0, 4.0] and data["levels"]["mu"] == [0.0, 1.0]
    assert len(data["runs"]["rows"]) == 24 and len(data["pairs"]["rows"]) == 12
    assert data["variance_decomposition"]["trading_effect"]["computed"] in (True, False)
    assert "<h2>Trading effect per pair across κ</h2>" in html and "<h2>job_metrics</h2>" in html
    assert "trading_effect_ci_low" in html and "95% interval (t over pairs)" in html
    pairs_table = html[html.index("<h2>Pairs</h2>"):]
    assert pairs_table.split("</table>")[0].count("<tr>") == 13  # header + 12 pairs
    assert run("report", "nope", ok=False).exit_code == 1


def test_render_sweep_report_escapes_and_handles_no_results():
    job = {"job_id": "x<script>", "status": "pending", "description": "<b>bold</b>", "kappas": [0.5]}
    html = render_sweep_report(job, [], None, [])
    assert "<script>" not in html and "&lt;b&gt;bold&lt;/b&gt;" in html
    assert "No completed runs with metrics yet." in html and "run-data" not in html


def test_grid_table_shows_each_cells_mean_effect_and_interval():
    """Three seeds per cell: mean ± the t half-width, the interval, and how many exclude 0."""
    effects = {(0.5, 0.0): [0.10, 0.12, 0.11], (0.5, 1.0): [-0.05, 0.06, 0.01], (1.0, 0.0): [-0.02, -0.03, -0.025]}
    pairs, runs_rows = [], []
    for (kappa, mu), cell in effects.items():
        for seed, effect in enumerate(cell):
            grid = {"kappa": kappa, "concentration": 1.0, "mu": mu, "outside_mid_ratio": 1.0, "seed": seed}
            pairs.append({**grid, "delta_passive": 0.5, "delta_active": 0.5 - effect, "trading_effect": effect})
            runs_rows += [{**grid, "status": "completed", "regime": regime, "delta_total": d, "phi_total": 1 - d}
                          for regime, d in (("passive", 0.5), ("active", 0.5 - effect))]
    html = render_sweep_report({"job_id": "ci", "status": "completed"}, runs_rows, None, pairs)
    table = html[html.index("data-table='grid'"):].split("</table>")[0]
    cells = [re.findall(r"<td[^>]*>([^<]*)</td>", row) for row in table.split("<tr>")[2:]]
    assert len(cells) == 3
    for cell, values in zip(cells, effects.values()):
        low, high = mean_ci(values)
        mean, half = sum(values) / 3, (high - low) / 2
        assert cell[7] == f"{mean:.4g} ± {half:.3g}" and cell[8] == f"[{low:.4g}, {high:.4g}]"
        assert cell[9] == ("yes" if low > 0 or high < 0 else "no")
    assert "<b>2 of 3</b> grid cells" in html  # the clear positive and the clear negative cell


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def test_report_opens_offline_in_a_browser(local_artifacts, sweep, tmp_path):
    """Every view is drawn, with complete legends and the numbers of the sweep; brushing,
    hovering and turning the surface work; no console error and nothing from the network."""
    from playwright.sync_api import sync_playwright

    out = tmp_path / "report.html"
    run("report", JOB, "--out", out)
    pairs = as_json("jobs", "metrics", JOB)["pairs"]
    stored = as_json("jobs", "get", JOB)["job_metrics"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 900})
            requested, errors = [], []
            page.on("request", lambda request: requested.append(request.url))
            page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(out.as_uri())
            page.wait_for_selector("body[data-drawn='1']")
            title = page.title()
            drawn = {view: page.locator(f"[data-view='{view}'] svg.chart").count() for view in VIEWS}
            heat = page.eval_on_selector_all(
                "svg[data-heatmap] rect.cell",
                "rs => rs.map(r => [r.closest('svg').dataset.heatmap, +r.closest('svg').dataset.concentration,"
                " +r.dataset.kappa, +r.dataset.mu, r.dataset.value === '' ? null : +r.dataset.value])")
            legends = {view: page.locator(f"[data-view='{view}'] [data-legend]").all_inner_texts() for view in ("delta", "effect", "scatter")}
            shares = page.eval_on_selector_all("[data-view='variance'] rect.bar",
                                               "bs => bs.map(b => [b.dataset.of, b.dataset.effect, +b.dataset.share])")
            selected = page.locator("[data-role='selected']")
            before = selected.inner_text()
            handle = page.locator("[data-axis='kappa'] rect[fill='transparent']")
            handle.scroll_into_view_if_needed()
            axis = handle.bounding_box()
            page.mouse.move(axis["x"] + axis["width"] / 2, axis["y"] + 2)
            page.mouse.down()
            page.mouse.move(axis["x"] + axis["width"] / 2, axis["y"] + axis["height"] / 2, steps=5)
            page.mouse.up()
            brushed = selected.inner_text()
            page.hover("[data-view='scatter'] .mark >> nth=0", force=True)  # points may overlap
            tip = page.locator("#tip").inner_text()
            quad = page.locator("[data-view='surface'] polygon.quad").first.get_attribute("points")
            n_quads = page.locator("[data-view='surface'] polygon.quad").count()
            surface = page.locator("[data-view='surface'] svg")
            surface.scroll_into_view_if_needed()
            box = surface.bounding_box()
            page.mouse.move(box["x"] + 200, box["y"] + 200)
            page.mouse.down()
            page.mouse.move(box["x"] + 300, box["y"] + 240, steps=4)
            page.mouse.up()
            turned = page.locator("[data-view='surface'] polygon.quad").first.get_attribute("points")
            page.screenshot(path=tmp_path / "report.png", full_page=True)
        finally:
            browser.close()
    assert title == f"Sweep {JOB}" and errors == []
    assert [u for u in requested if not u.startswith(("file:", "data:"))] == []  # nothing from the network
    # a panel per concentration; heatmaps: δ passive, δ active and trading effect for each concentration
    assert drawn == {"delta": 2, "phi": 2, "scatter": 1, "effect": 2, "heatmaps": 6, "distributions": 2,
                     "parallel": 1, "surface": 1, "variance": 1}
    # every heatmap cell holds the mean of its pairs (one seed: the pair itself)
    assert len(heat) == 6 * 3 * 2
    by_cell = {(p["concentration"], p["kappa"], p["mu"]): p for p in pairs}
    for name, c, kappa, mu, value in heat:
        assert value == pytest.approx(by_cell[(c, kappa, mu)][name]), (name, c, kappa, mu)
    # legends name every μ (colour and marker) and both regimes: nothing cut
    for view in ("delta", "effect"):
        assert {"μ = 0", "μ = 1"} <= set(legends[view])
    assert {"passive (dealers never trade)", "active (dealers trade)"} <= set(legends["delta"])
    assert {"μ = 0", "μ = 1", "c = 0.5", "c = 2"} <= set(legends["scatter"])
    decomposition = stored["raw_summary"]["variance_decomposition"]
    for of, effect, share in shares:
        assert share == pytest.approx(decomposition[of]["shares"][effect])
    assert before.startswith("12 of 12 pairs selected")
    assert brushed.startswith("4 of 12 pairs selected")  # the upper half of the κ axis: κ = 4, 2 c × 2 μ
    assert "κ" in tip and "δ passive" in tip
    assert n_quads == (3 - 1) * (2 - 1) and turned != quad


def _second_sweep(store, sweep, job_id="other-sweep"):
    """Another sweep of the same grid without κ = 4, in bilancio_compat mode, whose active runs
    default 0.01 more: its trading effect is 0.01 lower in every shared cell."""
    job = next(j for j in sweep.jobs if j["job_id"] == JOB)
    store.save_job({**job, "job_id": job_id, "cash_accounting": "bilancio_compat",
                    "spec": {**job["spec"], "job_id": job_id, "cash_accounting": "bilancio_compat", "kappas": [0.25, 1.0]}})
    kept = {r["run_id"]: r for r in sweep.runs if r["job_id"] == JOB and r["kappa"] != 4.0}
    rename = {run_id: run_id.replace(JOB, job_id) for run_id in kept}
    store.upsert_runs([{**r, "run_id": rename[r["run_id"]], "job_id": job_id} for r in kept.values()])
    store.upsert_metrics([{**m, "run_id": rename[m["run_id"]], "job_id": job_id,
                           "delta_total": m["delta_total"] + (0.01 if kept[m["run_id"]]["regime"] == "active" else 0)}
                          for m in sweep.metrics if m["run_id"] in kept])


def test_jobs_compare(backend, sweep):
    _second_sweep(backend, sweep)
    out = as_json("jobs", "compare", JOB, "other-sweep")
    assert list(out) == ["a", "b", "spec_differences", "cells", "only_in_a", "only_in_b"]
    assert out["a"] == JOB and out["b"] == "other-sweep"
    assert out["spec_differences"] == {"kappas": {"a": [0.25, 1.0, 4.0], "b": [0.25, 1.0]},
                                       "cash_accounting": {"a": "conserving", "b": "bilancio_compat"}}
    assert len(out["cells"]) == 8 and len(out["only_in_a"]) == 4 and out["only_in_b"] == []
    assert {c["kappa"] for c in out["only_in_a"]} == {4.0}
    runs = {(*(r[c] for c in GRID), r["regime"]): r["delta_total"] for r in completed_runs(sweep)}
    for cell in out["cells"]:
        assert list(cell) == [*GRID, "delta_passive_a", "delta_passive_b", "delta_active_a", "delta_active_b",
                              "trading_effect_a", "trading_effect_b", "trading_effect_diff"]
        key = tuple(cell[c] for c in GRID)
        assert cell["delta_passive_a"] == cell["delta_passive_b"] == pytest.approx(runs[(*key, "passive")])
        assert cell["delta_active_b"] == pytest.approx(runs[(*key, "active")] + 0.01)
        assert cell["trading_effect_a"] == pytest.approx(runs[(*key, "passive")] - runs[(*key, "active")])
        assert cell["trading_effect_diff"] == pytest.approx(-0.01)
    rows = as_csv("jobs", "compare", JOB, "other-sweep")
    assert len(rows) == 8 and float(rows[0]["trading_effect_diff"]) == pytest.approx(-0.01)
    table = run("jobs", "compare", JOB, "other-sweep").stdout
    assert "cash_accounting  conserving" in table and "8 grid cells in both" in table
    assert "only in A: 4 cells, only in B: 0 cells" in table
    assert run("jobs", "compare", JOB, "nope", ok=False).exit_code == 1


def test_report_draws_the_comparison(local_artifacts, sweep, tmp_path):
    with SqlStore(os.environ["BILANCIO_SUPABASE_DB_URL"]) as store:
        _second_sweep(store, sweep)
    out = tmp_path / "compare.html"
    assert "compared with other-sweep: 8 cells in both" in run("report", JOB, "--compare", "other-sweep", "--out", out).stdout
    html = out.read_text(encoding="utf-8")
    assert "Comparison: A = castle-river-mountain, B = other-sweep" in html and "data-view='compare'" in html
    assert read_page_data(html)["compare"]["b"] == "other-sweep" and len(read_page_data(html)["compare"]["cells"]) == 8
    table = html[html.index("data-table='compare'"):].split("</table>")[0]
    assert table.count("<tr>") == 9 and table.count(">-0.01</td></tr>") == 8  # the B − A column
    visual = tmp_path / "visual.html"
    assert "Wrote" in run("jobs", "visualize", JOB, "-o", visual).stdout and visual.exists()


def test_legends_are_complete_for_a_single_concentration_and_many_mus(tmp_path):
    """The grid that cut the old report's legend (one concentration, six μ): every μ and both
    regimes are listed, each entry fully inside the page, each μ with its own colour and marker."""
    from playwright.sync_api import sync_playwright

    mus = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    rows, pairs = [], []
    for kappa in (0.5, 1.0, 2.0):
        for mu in mus:
            grid = {"kappa": kappa, "concentration": 1.0, "mu": mu, "outside_mid_ratio": 1.0, "seed": 1}
            d_passive, d_active = 0.8 / kappa, 0.8 / kappa - 0.05 * mu
            rows += [{**grid, "status": "completed", "regime": r, "delta_total": d, "phi_total": 1 - d}
                     for r, d in (("passive", d_passive), ("active", d_active))]
            pairs.append({**grid, "delta_passive": d_passive, "delta_active": d_active, "trading_effect": d_passive - d_active})
    out = tmp_path / "one-c.html"
    out.write_text(render_sweep_report({"job_id": "one-c", "status": "completed"}, rows, None, pairs), encoding="utf-8")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 900, "height": 800})
            page.goto(out.as_uri())
            page.wait_for_selector("body[data-drawn='1']")
            width = page.evaluate("document.documentElement.clientWidth")
            entries = page.eval_on_selector_all(
                "[data-view='delta'] [data-legend]",
                "es => es.map(e => { const b = e.getBoundingClientRect(), m = e.querySelector('.mark');"
                " return [e.textContent, b.left, b.right, b.width, m ? m.getAttribute('fill') || m.getAttribute('stroke') : null,"
                " m ? m.tagName + (m.getAttribute('points') || '').split(' ').length : null]; })")
            heatmaps = page.locator("svg[data-heatmap]").count()
        finally:
            browser.close()
    labels = [e[0] for e in entries]
    assert labels == [f"μ = {m:g}" for m in mus] + ["passive (dealers never trade)", "active (dealers trade)"]
    assert all(0 <= left and right <= width and w > 20 for _, left, right, w, _, _ in entries)
    mu_entries = entries[:len(mus)]
    assert len({e[4] for e in mu_entries}) == len(mus) and len({e[5] for e in mu_entries}) == len(mus)  # colour, marker
    assert heatmaps == 3  # δ passive, δ active, trading effect over κ × μ for the one concentration
