"""A balanced sweep through the real Dagster jobs and assets, in-process, on every store.

Each test runs real simulations on the local process pool and checks every table and
artifact afterwards: SQLite (the embedded default) and the real PostgreSQL the suite starts,
with artifacts on the local volume or on the real S3 server.
"""

import json
import time
from urllib.parse import urlsplit

import dagster as dg
import httpx
import pytest

from bilancio_pipeline.compute.base import RunOutcome
from bilancio_pipeline.compute.local import LocalCompute
from bilancio_pipeline.defs import assets, inprocess
from bilancio_pipeline.defs.inprocess import SweepFailed, failure_message, run_sweep
from bilancio_pipeline.defs.instance import DAGSTER_ENV, ensure_dagster_home
from bilancio_pipeline.defs.resources import ComputeResource
from bilancio_pipeline.definitions import build_definitions
from bilancio_pipeline.storage.config import artifacts_from_env, store_from_env
from bilancio_pipeline.storage.artifacts.base import manifest_key

SPEC = {"n_agents": 12, "maturity_days": 5, "kappas": [0.5, 1.0], "concentrations": [1.0], "mus": [0.5],
        "outside_mid_ratios": [1.0], "seeds": [1, 2], "job_id": "test-sweep"}  # 2 x 2 cells x 2 regimes = 8 runs
RUN_ARTIFACTS = {"scenario.yaml", "out/events.jsonl", "out/balances.csv", "out/metrics.csv", "out/metrics.json",
                 "out/metrics.html", "run.html"}


class FlakyCompute(ComputeResource):
    """The local pool, except that runs whose id contains `fail_marker` fail, and each finished
    run is handed on `pause_seconds` after the previous one."""

    fail_marker: str = "never"
    pause_seconds: float = 0.0

    def open(self, executor=None):
        inner, marker, pause = LocalCompute(workers=2), self.fail_marker, self.pause_seconds

        class Wrapped(LocalCompute):
            def run_batch(self, tasks, artifacts_root):
                keep = [t for t in tasks if marker not in t.run_id]
                for t in tasks:
                    if marker in t.run_id:
                        yield RunOutcome(run_id=t.run_id, ok=False, error="RuntimeError: injected failure")
                for outcome in inner.run_batch(keep, artifacts_root):
                    yield outcome
                    time.sleep(pause)

        return Wrapped(workers=2)


def _configure(request, tmp_path, monkeypatch, backend: str) -> str:
    """Configure the stores through the environment, as a user would, on the Dagster instance
    `bilancio-pipeline ui` gives them (our dagster.yaml and event settings)."""
    monkeypatch.setenv("BILANCIO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    for name, value in DAGSTER_ENV.items():
        monkeypatch.setenv(name, value)
    ensure_dagster_home()
    for var in ("BILANCIO_SUPABASE_DB_URL", "BILANCIO_SUPABASE_URL", "BILANCIO_SUPABASE_KEY", "BILANCIO_R2_BUCKET"):
        monkeypatch.delenv(var, raising=False)
    if backend.startswith("postgres"):
        monkeypatch.setenv("BILANCIO_SUPABASE_DB_URL", request.getfixturevalue("postgres_url"))
    if backend.endswith("s3"):
        server = request.getfixturevalue("s3_server")
        monkeypatch.setenv("BILANCIO_R2_BUCKET", request.getfixturevalue("s3_bucket"))
        monkeypatch.setenv("BILANCIO_R2_ENDPOINT_URL", server.endpoint_url)
        monkeypatch.setenv("BILANCIO_R2_ACCESS_KEY_ID", server.access_key)
        monkeypatch.setenv("BILANCIO_R2_SECRET_ACCESS_KEY", server.secret_key)
    return backend


@pytest.fixture(params=["sqlite-local", "postgres-local", "postgres-s3"])
def instance(request, tmp_path, monkeypatch):
    """A Dagster instance and stores configured through the environment, as a user would."""
    _configure(request, tmp_path, monkeypatch, request.param)
    with dg.DagsterInstance.get() as inst:
        yield inst


@pytest.fixture(params=["sqlite-local", "postgres-local"])
def sql_instance(request, tmp_path, monkeypatch):
    _configure(request, tmp_path, monkeypatch, request.param)
    with dg.DagsterInstance.get() as inst:
        yield inst


@pytest.fixture
def sqlite_instance(request, tmp_path, monkeypatch):
    _configure(request, tmp_path, monkeypatch, "sqlite-local")
    with dg.DagsterInstance.get() as inst:
        yield inst


def _sweep(instance, fail_marker="never", **overrides):
    defs = build_definitions(compute=FlakyCompute(fail_marker=fail_marker))
    return run_sweep(defs, instance, {**SPEC, **overrides}, batch_size=5)


def test_balanced_sweep_end_to_end(instance):
    progress = _sweep(instance)
    assert (progress.total, progress.done, progress.failed) == (8, 8, 0)

    store, volume = store_from_env(), artifacts_from_env()
    job = store.get_job("test-sweep")
    assert job["status"] == "completed" and job["completed_runs"] == 8 and job["failed_runs"] == 0
    assert job["spec"]["kappas"] == [0.5, 1.0] and job["total_runs"] == 8
    events = [e["event_type"] for e in store.list_events("test-sweep")]
    assert events[:2] == ["created", "started"] and events[-1] == "completed"
    assert events.count("progress") == 2  # one per batch of 5 and 3 runs

    runs = store.list_runs("test-sweep")
    assert len(runs) == 8 and {r["status"] for r in runs} == {"completed"}
    assert sorted(r["regime"] for r in runs) == ["active"] * 4 + ["passive"] * 4
    metrics = {m["run_id"]: m for m in store.get_metrics([r["run_id"] for r in runs])}
    assert len(metrics) == 8
    for run in runs:
        m = metrics[run["run_id"]]
        assert 0 <= m["delta_total"] <= 1 and abs(m["delta_total"] + m["phi_total"] - 1) < 1e-9
        assert m["raw_metrics"]["cash_accounting"] == "conserving"
        assert m["trading_effect"] is not None
        assert run["execution_time_ms"] > 0
        assert set(run["artifact_urls"]) >= RUN_ARTIFACTS
        keys = volume.list_keys(run["artifact_base"])
        assert {k.split(run["artifact_base"] + "/")[1] for k in keys} >= RUN_ARTIFACTS
        events_jsonl = volume.get_bytes(f"{run['artifact_base']}/out/events.jsonl").decode().splitlines()
        assert all("kind" in json.loads(line) for line in events_jsonl)

    aggregate = store.get_job_metrics("test-sweep")
    assert aggregate["n_pairs"] == 4 and aggregate["n_comparisons"] == 4
    passive = {(r["kappa"], r["seed"]): metrics[r["run_id"]]["delta_total"] for r in runs if r["regime"] == "passive"}
    assert aggregate["mean_delta_passive"] == pytest.approx(sum(passive.values()) / 4)
    manifest = json.loads(volume.get_bytes(manifest_key("test-sweep")))
    assert manifest["job"]["status"] == "completed" and manifest["job_metrics"]["n_pairs"] == 4

    # Dagster knows every partition as materialized, and the checks passed.
    materialized = instance.get_materialized_partitions(dg.AssetKey("run_metrics"))
    assert materialized == {r["run_id"] for r in runs}
    assert instance.get_materialized_partitions(dg.AssetKey("job_metrics")) == {"test-sweep"}

    # Every partition shows its run in each asset's one materialization for it: parameters,
    # headline metrics and a link to its files; job_metrics shows every field of its row.
    for run in runs[:2]:
        for asset in ("sweep_runs", "run_metrics", "run_artifacts"):
            (record,) = instance.fetch_materializations(dg.AssetRecordsFilter(
                asset_key=dg.AssetKey(asset), asset_partitions=[run["run_id"]]), limit=10).records
            meta = record.asset_materialization.metadata
            assert meta["kappa"].value == run["kappa"] and meta["seed"].value == run["seed"]
            assert meta["regime"].value == run["regime"] and meta["mu"].value == run["mu"]
            assert meta["delta_total"].value == pytest.approx(metrics[run["run_id"]]["delta_total"], rel=1e-3)
            assert meta["n_defaults"].value == metrics[run["run_id"]]["n_defaults"]
            assert urlsplit(meta["artifacts"].value).path.endswith(f"{run['run_id']}/run.html")
            assert f"κ {run['kappa']:g}" in meta["run"].value
    summary = instance.get_latest_materialization_event(dg.AssetKey("job_metrics")).asset_materialization.metadata
    assert summary["n_pairs"].value == 4 and summary["mean_delta_passive"].value == pytest.approx(
        aggregate["mean_delta_passive"], rel=1e-3)

    # The report is drawn after job_metrics, beside the artifacts, and linked from its materialization.
    report = instance.get_latest_materialization_event(dg.AssetKey("sweep_report")).asset_materialization
    assert report.partition == "test-sweep"
    html = volume.get_bytes("test-sweep/report.html").decode()
    link = report.metadata["report"].value
    assert urlsplit(link).path.endswith("test-sweep/report.html")
    if volume.backend != "local":  # on S3: a presigned link that opens as is
        opened = httpx.get(link)
        assert opened.status_code == 200 and "test-sweep" in opened.text
    assert "test-sweep" in html

    # Launching the same sweep again creates nothing and recomputes nothing.
    before = {r["run_id"]: r["updated_at"] for r in store.list_runs("test-sweep")}
    progress = _sweep(instance)
    assert progress.done == 8
    after = {r["run_id"]: r["updated_at"] for r in store.list_runs("test-sweep")}
    assert after == before  # no run row was touched: nothing ran again
    assert len(instance.get_dynamic_partitions("runs")) == 8


def test_failing_run_fails_alone_and_relaunch_retries_it(sql_instance):
    instance = sql_instance
    progress = _sweep(instance, fail_marker="active")
    assert progress.failed == 4 and progress.done == 8
    store = store_from_env()
    runs = {r["run_id"]: r for r in store.list_runs("test-sweep")}
    failed = {k for k, r in runs.items() if r["status"] == "failed"}
    assert failed == {k for k in runs if "_active_" in k}
    assert all("injected failure" in runs[k]["error"] for k in failed)
    assert store.completed_run_ids("test-sweep") == set(runs) - failed
    job = store.get_job("test-sweep")
    assert job["status"] == "failed" and "4 of 8 runs failed" in job["error"]
    # Dagster shows the completed partitions materialized and only the failed ones failed.
    assert instance.get_materialized_partitions(dg.AssetKey("run_metrics")) == set(runs) - failed

    finished = {k: runs[k]["updated_at"] for k in set(runs) - failed}
    progress = _sweep(instance)  # nothing fails any more: only the 4 failed runs run again
    assert (progress.done, progress.failed) == (8, 0)
    runs = {r["run_id"]: r for r in store.list_runs("test-sweep")}
    assert {k: runs[k]["updated_at"] for k in finished} == finished
    assert store.get_job("test-sweep")["status"] == "completed"
    assert store.get_job_metrics("test-sweep")["n_pairs"] == 4


@pytest.mark.parametrize("bad, field", [
    ({"kappas": []}, "kappas"), ({"mus": [1.5]}, "mus"), ({"seeds": [1, 1]}, "seeds"),
    ({"job_id": "../etc"}, "job_id"), ({"concentrations": [0.0]}, "concentrations"),
])
def test_bad_spec_is_rejected_before_anything_is_written(sqlite_instance, bad, field):
    instance = sqlite_instance
    with pytest.raises(SweepFailed, match=field):
        _sweep(instance, **bad)
    assert store_from_env().list_jobs() == []
    assert instance.get_dynamic_partitions("runs") == []


def test_partitions_materialize_as_runs_finish_and_recompute_reruns_them(sqlite_instance, monkeypatch):
    instance = sqlite_instance
    monkeypatch.setattr(assets, "FLUSH_SECONDS", 0.0)  # store and show every run as soon as it ends
    _sweep(instance, kappas=[0.5, 1.0, 2.0], seeds=[1])  # 6 runs: one batch of 5, one of 1
    store = store_from_env()
    runs = {r["run_id"]: r for r in store.list_runs("test-sweep")}
    records = instance.fetch_materializations(dg.AssetKey("run_metrics"), limit=100).records
    assert sorted(r.partition_key for r in records) == sorted(runs)  # one materialization per run
    first = min(records, key=lambda r: r.timestamp)
    batch = [r for r in runs.values() if r["run_id"] in {x.partition_key for x in records}]
    # the first run of the batch was shown materialized before the batch's last run had finished
    assert first.timestamp < max(r["completed_at"].timestamp() for r in batch)

    before = {k: r["completed_at"] for k, r in runs.items()}
    progress = _sweep(instance, kappas=[0.5, 1.0, 2.0], seeds=[1], recompute=True)
    assert (progress.done, progress.failed) == (6, 0)
    after = {r["run_id"]: r["completed_at"] for r in store.list_runs("test-sweep")}
    assert all(after[k] > before[k] for k in before)  # every completed run ran again, on purpose
    assert len(instance.fetch_materializations(dg.AssetKey("run_metrics"), limit=100).records) == 12


def test_the_command_line_shows_progress_within_its_one_batch_and_job_metrics_before_the_report(
        sqlite_instance, monkeypatch):
    monkeypatch.setattr(assets, "FLUSH_SECONDS", 0.0)  # each run is stored as it ends
    monkeypatch.setattr(inprocess, "PROGRESS_SECONDS", 0.05)
    drawn, at_aggregate = [], {}
    volume = artifacts_from_env()

    def report_drawn() -> bool:
        return any(key.endswith("report.html") for key in volume.list_keys("test-sweep"))

    def on_aggregated(progress):
        at_aggregate.update(metrics=store_from_env().get_job_metrics("test-sweep"), report=report_drawn(),
                            done=progress.done)

    progress = run_sweep(build_definitions(compute=FlakyCompute(pause_seconds=0.3)), sqlite_instance, SPEC,
                         on_progress=lambda p: drawn.append(p.done), on_aggregated=on_aggregated)
    assert (progress.done, progress.failed) == (8, 0)
    # one batch of all 8 runs, yet the line moved while it ran: the watcher read the store
    assert len(sqlite_instance.get_runs(dg.RunsFilter(job_name="sweep_batch_job"))) == 1
    assert any(0 < done < 8 for done in drawn), drawn
    assert drawn == sorted(drawn) and drawn[-1] == 8
    # the numbers were handed over before the figures were drawn, and the figures followed
    assert at_aggregate["metrics"]["n_pairs"] == 4 and at_aggregate["done"] == 8
    assert at_aggregate["report"] is False and report_drawn()


def test_a_partition_that_is_not_a_run_fails_with_one_line(sqlite_instance):
    instance = sqlite_instance
    instance.add_dynamic_partitions("runs", ["my-test-run"])
    defs = build_definitions(compute=FlakyCompute())
    result = defs.resolve_job_def("sweep_batch_job").execute_in_process(
        instance=instance, partition_key="my-test-run", raise_on_error=False)
    assert not result.success
    message = failure_message(result)
    assert "my-test-run" in message and "not runs of a launched sweep" in message and "\n" not in message


def _launch_job():
    return build_definitions(compute=ComputeResource(workers=1)).resolve_job_def("launch_sweep_job")


def test_re_executing_a_launch_resumes_its_sweep(sqlite_instance):
    instance = sqlite_instance
    config = {"ops": {"launch_sweep": {"config": {**SPEC, "job_id": ""}}}}
    first = dg.execute_job(dg.reconstructable(_launch_job), instance, run_config=config)
    assert first.success
    job_id = instance.get_run_by_id(first.run_id).tags["bilancio/job_id"]
    again = dg.execute_job(dg.reconstructable(_launch_job), instance,
                           reexecution_options=dg.ReexecutionOptions(parent_run_id=first.run_id))
    assert again.success
    assert instance.get_run_by_id(again.run_id).tags["bilancio/job_id"] == job_id
    assert [j["job_id"] for j in store_from_env().list_jobs()] == [job_id]  # no second sweep


def test_an_executor_left_empty_is_the_configured_one(sqlite_instance):
    defs = build_definitions(compute=ComputeResource(executor="modal", workers=1))  # as BILANCIO_EXECUTOR=modal
    launch = defs.resolve_job_def("launch_sweep_job").execute_in_process(
        run_config={"ops": {"launch_sweep": {"config": SPEC}}}, instance=sqlite_instance,
        tags={"bilancio/launched_by": "cli"})  # no batches: only what the launch records
    assert launch.success
    assert store_from_env().get_job("test-sweep")["executor"] == "modal"
