"""The sensors that move a sweep along, evaluated against real Dagster runs and a real store."""

import uuid

import dagster as dg
import pytest

from bilancio_pipeline.compute.local import LocalCompute
from bilancio_pipeline.defs import sensors
from bilancio_pipeline.defs.dead_runs import DRIVER_DONE_TAG
from bilancio_pipeline.defs.orchestration import sweep_busy
from bilancio_pipeline.defs.run_tags import HANDED_ON_TAG, range_tags
from bilancio_pipeline.defs.resources import ComputeResource, StoreResource
from bilancio_pipeline.definitions import build_definitions

SPEC = {"n_agents": 10, "maturity_days": 5, "kappas": [0.5, 1.0, 2.0], "seeds": [1], "job_id": "sensor-sweep"}


class BrokenCompute(ComputeResource):
    """Compute that dies after the runs were marked running, like a killed run worker."""

    def open(self, executor=None):
        class Broken(LocalCompute):
            def run_batch(self, tasks, artifacts_root):
                raise SystemError("run worker killed")
                yield  # a generator, like the real one

        return Broken()


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("BILANCIO_HOME", str(tmp_path))
    for var in ("BILANCIO_SUPABASE_DB_URL", "BILANCIO_SUPABASE_URL", "BILANCIO_R2_BUCKET"):
        monkeypatch.delenv(var, raising=False)
    store = StoreResource(home=str(tmp_path))
    with dg.DagsterInstance.ephemeral() as instance:
        yield instance, store, store.open()


def _launch(defs, instance):
    result = defs.resolve_job_def("launch_sweep_job").execute_in_process(
        run_config={"ops": {"launch_sweep": {"config": SPEC}}}, instance=instance)
    assert result.success
    return result


def _status_context(instance, result, status):
    run = instance.get_run_by_id(result.run_id)
    event = next(e for e in result.all_events if e.event_type_value == status)
    return dg.build_run_status_sensor_context(
        sensor_name="s", dagster_event=event, dagster_instance=instance, dagster_run=run)


def test_launch_success_requests_contiguous_batches(env, monkeypatch):
    instance, store_resource, store = env
    monkeypatch.setenv("BILANCIO_BATCH_SIZE", "4")
    result = _launch(build_definitions(), instance)
    context = _status_context(instance, result, "PIPELINE_SUCCESS")
    requests = list(sensors.sweep_batches_sensor(context, store=store_resource) or [])
    keys = instance.get_dynamic_partitions("runs")
    assert len(keys) == 6
    assert [(r.tags["dagster/asset_partition_range_start"], r.tags["dagster/asset_partition_range_end"])
            for r in requests] == [(keys[0], keys[3]), (keys[4], keys[5])]
    assert all(r.tags["bilancio/job_id"] == "sensor-sweep" for r in requests)
    assert len({r.run_key for r in requests}) == 2  # idempotent: one run key per batch


def test_completion_sensor_waits_for_every_run(env):
    instance, store_resource, store = env
    _launch(build_definitions(), instance)
    context = dg.build_sensor_context(instance=instance, resources={"store": store_resource})
    assert list(sensors.sweep_completion_sensor(context) or []) == []  # runs still pending

    runs = store.list_runs("sensor-sweep")
    store.upsert_runs([{"run_id": r["run_id"], "job_id": "sensor-sweep", "status": "completed"} for r in runs[:-1]])
    context = dg.build_sensor_context(instance=instance, resources={"store": store_resource})
    assert list(sensors.sweep_completion_sensor(context) or []) == []  # one still pending

    store.upsert_runs([{"run_id": runs[-1]["run_id"], "job_id": "sensor-sweep", "status": "failed", "error": "x"}])
    context = dg.build_sensor_context(instance=instance, resources={"store": store_resource})
    (request,) = list(sensors.sweep_completion_sensor(context))
    assert request.partition_key == "sensor-sweep"
    assert "completed5" in request.run_key and "failed1" in request.run_key


def test_a_dead_batch_leaves_no_run_running(env):
    instance, store_resource, store = env
    defs = build_definitions(compute=BrokenCompute())
    _launch(defs, instance)
    keys = instance.get_dynamic_partitions("runs")
    batch = defs.resolve_job_def("sweep_batch_job").execute_in_process(
        instance=instance, tags=range_tags(keys[0], keys[2]), raise_on_error=False)
    assert not batch.success
    statuses = {r["run_id"]: r["status"] for r in store.list_runs("sensor-sweep")}
    assert [statuses[k] for k in keys[:3]] == ["running"] * 3  # what a killed worker leaves behind

    context = _status_context(instance, batch, "PIPELINE_FAILURE")
    list(sensors.batch_failure_sensor(context, store=store_resource) or [])
    rows = {r["run_id"]: r for r in store.list_runs("sensor-sweep")}
    assert [rows[k]["status"] for k in keys[:3]] == ["failed"] * 3
    assert batch.run_id in rows[keys[0]]["error"]
    assert [rows[k]["status"] for k in keys[3:]] == ["pending"] * 3  # outside the batch: untouched


@pytest.mark.parametrize("will_retry", [True, False])
def test_a_failed_batch_that_dagster_retries_keeps_its_runs_for_the_retry(env, will_retry):
    """Batches are idempotent: if Dagster's run retries will re-run the batch, its runs wait for
    the retry as they are; once retries are spent, they become failed and the sweep can finish."""
    instance, store_resource, store = env
    defs = build_definitions(compute=BrokenCompute())
    _launch(defs, instance)
    keys = instance.get_dynamic_partitions("runs")
    batch = defs.resolve_job_def("sweep_batch_job").execute_in_process(
        instance=instance, tags=range_tags(keys[0], keys[-1]), raise_on_error=False)
    instance.add_run_tags(batch.run_id, {"dagster/will_retry": str(will_retry).lower()})  # as run retries set it
    requests = list(sensors.batch_failure_sensor(_status_context(instance, batch, "PIPELINE_FAILURE"),
                                                 store=store_resource) or [])
    statuses = {r["status"] for r in store.list_runs("sensor-sweep")}
    if will_retry:
        assert statuses == {"running"} and requests == []  # the retry runs them; no job_metrics yet
    else:
        assert statuses == {"failed"}
        (request,) = requests  # the last batch ended: job_metrics at once, no polling
        assert request.partition_key == "sensor-sweep"


def test_the_last_batch_succeeding_requests_job_metrics_at_once(env):
    instance, store_resource, store = env
    defs = build_definitions(compute=ComputeResource(workers=1))
    _launch(defs, instance)
    keys = instance.get_dynamic_partitions("runs")
    first = defs.resolve_job_def("sweep_batch_job").execute_in_process(
        instance=instance, tags={**range_tags(keys[0], keys[2]), "bilancio/job_id": "sensor-sweep"})
    context = _status_context(instance, first, "PIPELINE_SUCCESS")
    assert list(sensors.batch_success_sensor(context, store=store_resource) or []) == []  # 3 runs still pending
    last = defs.resolve_job_def("sweep_batch_job").execute_in_process(
        instance=instance, tags={**range_tags(keys[3], keys[5]), "bilancio/job_id": "sensor-sweep"})
    context = _status_context(instance, last, "PIPELINE_SUCCESS")
    (request,) = list(sensors.batch_success_sensor(context, store=store_resource))
    assert request.partition_key == "sensor-sweep" and "completed6" in request.run_key


def _in_flight_batch(instance, first: str, last: str, status=dg.DagsterRunStatus.STARTED) -> None:
    """A batch run of the sweep that is still going (submitted by someone else: a launch run)."""
    instance.add_run(dg.DagsterRun(job_name="sweep_batch_job", run_id=str(uuid.uuid4()), status=status,
                                   tags={**range_tags(first, last), "bilancio/job_id": "sensor-sweep"}))


def test_the_sensor_never_requests_a_run_a_batch_in_flight_has(env, monkeypatch):
    """Whoever submitted a batch (the launch run handing on, an earlier tick), the sensor leaves its
    runs alone, and no batch it requests spans them (a range takes every run between its ends)."""
    instance, store_resource, store = env
    monkeypatch.setenv("BILANCIO_BATCH_SIZE", "4")
    result = _launch(build_definitions(), instance)
    keys = instance.get_dynamic_partitions("runs")
    _in_flight_batch(instance, keys[1], keys[2])
    requests = list(sensors.sweep_batches_sensor(_status_context(instance, result, "PIPELINE_SUCCESS"),
                                                 store=store_resource) or [])
    assert [(r.tags["dagster/asset_partition_range_start"], r.tags["dagster/asset_partition_range_end"])
            for r in requests] == [(keys[0], keys[0]), (keys[3], keys[5])]


def test_a_launch_run_that_handed_its_batches_on_gets_none_from_the_sensor(env):
    instance, store_resource, store = env
    result = _launch(build_definitions(), instance)
    instance.add_run_tags(result.run_id, {HANDED_ON_TAG: "true"})  # as the launch op sets it (handoff.py)
    context = _status_context(instance, result, "PIPELINE_SUCCESS")
    assert list(sensors.sweep_batches_sensor(context, store=store_resource) or []) == []


def test_job_metrics_waits_while_another_batch_is_in_flight(env):
    """A batch that ends is the last only if no other batch of its sweep is in flight: what the
    batch itself checks before handing on to job_metrics (sweep_busy, besides itself)."""
    instance, store_resource, store = env
    _launch(build_definitions(), instance)
    keys = instance.get_dynamic_partitions("runs")
    store.upsert_runs([{"run_id": k, "job_id": "sensor-sweep", "status": "completed"} for k in keys])
    assert not sweep_busy(instance, "sensor-sweep")
    _in_flight_batch(instance, keys[0], keys[5])
    (batch,) = instance.get_runs(dg.RunsFilter(job_name="sweep_batch_job"))
    assert sweep_busy(instance, "sensor-sweep") and not sweep_busy(instance, "sensor-sweep", besides=batch.run_id)


_CLI_PROCESS = """
import sys
import dagster as dg
from bilancio_pipeline.definitions import build_definitions
from bilancio_pipeline.defs.inprocess import run_sweep
from bilancio_pipeline.defs.resources import ComputeResource

if __name__ == "__main__":  # the simulation pool's processes import this module too
    spec = {"n_agents": 10, "maturity_days": 5, "kappas": [0.5, 1.0, 2.0], "seeds": [1], "job_id": sys.argv[2]}
    defs = build_definitions(compute=ComputeResource(workers=1))
    with dg.DagsterInstance.get() as instance:
        if sys.argv[1] == "launch-only":  # as a command line killed right after its launch run
            tags = {"bilancio/launched_by": "cli", "dagster/max_retries": "0"}
            defs.resolve_job_def("launch_sweep_job").execute_in_process(
                run_config={"ops": {"launch_sweep": {"config": spec}}}, instance=instance, tags=tags)
        else:
            run_sweep(defs, instance, spec)
"""


def test_a_command_line_that_died_between_its_runs_is_taken_over(tmp_path, monkeypatch):
    """Killed while none of its runs was STARTED (after its launch run, between two batches), a
    command line leaves no dead run to find; its launch run, whose process is gone without
    saying it was done, is what tells the daemon to take the sweep over. One that finished
    is left alone."""
    import subprocess
    import sys

    monkeypatch.setenv("BILANCIO_HOME", str(tmp_path))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    (tmp_path / "dagster").mkdir()
    script = tmp_path / "cli.py"
    script.write_text(_CLI_PROCESS)
    subprocess.run([sys.executable, str(script), "launch-only", "died"], check=True, capture_output=True)
    subprocess.run([sys.executable, str(script), "whole", "finished"], check=True, capture_output=True)

    store = StoreResource(home=str(tmp_path))
    with dg.DagsterInstance.get() as instance:
        def tick():
            context = dg.build_sensor_context(instance=instance, resources={"store": store})
            return [r for r in sensors.dead_run_sensor(context) if isinstance(r, dg.RunRequest)]

        requests = tick()
        keys = [k for k in instance.get_dynamic_partitions("runs") if k.startswith("died_")]
        assert [(r.tags["dagster/asset_partition_range_start"], r.tags["dagster/asset_partition_range_end"])
                for r in requests] == [(keys[0], keys[-1])]
        assert {r.tags["bilancio/job_id"] for r in requests} == {"died"}  # not the finished sweep
        assert tick() == []  # taken over once
        launched = instance.get_runs(dg.RunsFilter(job_name="launch_sweep_job"))
        (finished,) = [r for r in launched if r.tags.get("bilancio/job_id") == "finished"]
        assert DRIVER_DONE_TAG in finished.tags  # the command line that finished said so
