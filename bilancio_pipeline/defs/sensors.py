"""Sensors that move a sweep along under the daemon, doing what the orchestrator
(sweeps/orchestrator.py) decides:

- after a launch, its unfinished runs are requested in batches;
- as soon as a sweep's last batch ends, its job_metrics is requested (run-status hops, no
  polling), with a slow periodic check as a safety net for hops missed while the daemon was down;
  (under `bilancio-pipeline ui` the runs make both hops themselves, handoff.py, and these
  sensors only catch what they could not);
- a batch that failed or was cancelled, and will not be retried, leaves no run `running`;
- a run whose worker process is gone is reported failed (dead_runs.py), which frees its slot and
  lets Dagster's run retries re-run it; a command-line sweep whose process died is taken over.
"""

import os
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg

from bilancio_pipeline.defs import console, dead_runs
from bilancio_pipeline.defs.handoff import WEBSERVER_URL_ENV
from bilancio_pipeline.defs.jobs import job_metrics_job, launch_sweep_job, sweep_batch_job
from bilancio_pipeline.defs.orchestration import batch_tags, batches_to_request, keys_of_run, sweep_busy, will_retry
from bilancio_pipeline.defs.partitions import job_id_of
from bilancio_pipeline.defs.resources import StoreResource
from bilancio_pipeline.defs.run_tags import HANDED_ON_TAG, JOB_ID_TAG, LAUNCHED_BY_TAG
from bilancio_pipeline.storage.base import NotFound, Store
from bilancio_pipeline.sweeps import orchestrator

log = console.events()

# A sensor tick costs the daemon and the code server about a tenth of a CPU-second, taken from the
# simulations of a running sweep (four run-status sensors every 2 s were a fifth of a core). When
# the runs hand their sweep on themselves (handoff.py, under `bilancio-pipeline ui`) the run-status
# sensors are only a safety net and tick slowly; otherwise (a plain `dagster dev`) they make every
# hop and tick fast.
HOP_SECONDS = 15 if os.environ.get(WEBSERVER_URL_ENV) else 2
DEAD_RUN_SECONDS = 20  # how long a dead run may hold its slot before it is reported failed


def _daemon_sweep(run: dg.DagsterRun) -> str | None:
    """The sweep a run belongs to, if the daemon drives it (a command line drives its own)."""
    return None if run.tags.get(LAUNCHED_BY_TAG) == "cli" else run.tags.get(JOB_ID_TAG)


@contextmanager
def _opened(store: StoreResource) -> Iterator[Store]:
    db = store.open()
    try:
        yield db
    finally:
        db.close()


def _batch_requests(db: Store, instance: dg.DagsterInstance, job_id: str, run_key: str):
    batches = batches_to_request(db, instance, job_id)
    console.batches_requested(job_id, batches)
    for i, batch in enumerate(batches):
        yield dg.RunRequest(run_key=f"{run_key}:{i}", tags=batch_tags(batch, job_id))


def _metrics_request(db: Store, instance: dg.DagsterInstance, job_id: str):
    key = orchestrator.metrics_due(db, job_id, sweep_busy(instance, job_id))
    if key:
        console.job_metrics_requested(job_id)
        yield dg.RunRequest(run_key=key, partition_key=job_id)


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=[launch_sweep_job],
    request_job=sweep_batch_job,
    minimum_interval_seconds=HOP_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="After a sweep is launched, request its unfinished runs in batches of contiguous partitions "
                "(unless the launch run submitted them itself).",
)
def sweep_batches_sensor(context: dg.RunStatusSensorContext, store: StoreResource):
    job_id = _daemon_sweep(context.dagster_run)
    handed_on = (context.instance.get_run_by_id(context.dagster_run.run_id) or context.dagster_run).tags.get(
        HANDED_ON_TAG)  # the launch run submitted its batches itself (handoff.py)
    if job_id and not handed_on:
        with _opened(store) as db:
            yield from _batch_requests(db, context.instance, job_id, context.dagster_run.run_id)


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=[sweep_batch_job],
    request_job=job_metrics_job,
    minimum_interval_seconds=HOP_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="When a sweep's last batch succeeds, materialize its job_metrics.",
)
def batch_success_sensor(context: dg.RunStatusSensorContext, store: StoreResource):
    job_id = _daemon_sweep(context.dagster_run)
    if job_id:
        with _opened(store) as db:
            yield from _metrics_request(db, context.instance, job_id)


def _after_bad_end(context: dg.RunStatusSensorContext, store: StoreResource, what: str):
    instance = context.instance
    run = instance.get_run_by_id(context.dagster_run.run_id) or context.dagster_run  # with its latest tags
    keys = keys_of_run(instance, run)
    retry = will_retry(instance, run)
    with _opened(store) as db:
        for job_id in sorted({job_id_of(k) for k in keys}):
            stuck = orchestrator.batch_ended_badly(
                db, job_id, [k for k in keys if job_id_of(k) == job_id],
                f"the Dagster run {run.run_id} that was executing this run {what}", retry)
            if retry:
                log.warning("sweep %s: batch run %s %s; Dagster retries it", job_id, run.run_id, what)
            elif stuck:
                log.warning("sweep %s: batch run %s %s; %d unfinished runs marked failed", job_id, run.run_id, what,
                            len(stuck))
            yield from _metrics_request(db, instance, job_id)


@dg.run_failure_sensor(
    monitored_jobs=[sweep_batch_job],
    request_job=job_metrics_job,
    minimum_interval_seconds=HOP_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="A failed batch that will not be retried leaves no run `running`: they become `failed`.",
)
def batch_failure_sensor(context: dg.RunFailureSensorContext, store: StoreResource):
    yield from _after_bad_end(context, store, "failed")


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.CANCELED,
    monitored_jobs=[sweep_batch_job],
    request_job=job_metrics_job,
    minimum_interval_seconds=HOP_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="A batch whose Dagster run was cancelled leaves no run `running`: they become `failed`.",
)
def batch_canceled_sensor(context: dg.RunStatusSensorContext, store: StoreResource):
    yield from _after_bad_end(context, store, "was cancelled")


@dg.sensor(
    job=job_metrics_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Safety net: any unfinished sweep whose runs have all ended gets its job_metrics.",
)
def sweep_completion_sensor(context: dg.SensorEvaluationContext, store: StoreResource):
    with _opened(store) as db:
        for job_id, key in orchestrator.sweeps_due(db, lambda job_id: sweep_busy(context.instance, job_id)):
            console.job_metrics_requested(job_id)
            yield dg.RunRequest(run_key=key, partition_key=job_id)


@dg.sensor(
    job=sweep_batch_job,
    minimum_interval_seconds=DEAD_RUN_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Runs whose worker process is gone (killed, out of memory, machine restarted) are reported "
                "failed, so they free their slot and Dagster's run retries re-run them; a command-line sweep "
                "whose process died is taken over.",
)
def dead_run_sensor(context: dg.SensorEvaluationContext, store: StoreResource):
    instance = context.instance
    ended = dead_runs.end_dead_runs(instance)
    # A dead command-line run cannot be retried by Dagster (it has no code location) and no run
    # status sensor sees it: the daemon runs what its sweep has left.
    orphans = dead_runs.orphaned_cli_runs(instance)
    if orphans:
        with _opened(store) as db:
            for job_id, runs in _by_sweep(orphans).items():
                if job_id and _unfinished(db, job_id):
                    log.warning("sweep %s: the command line running it is gone; the daemon takes it over", job_id)
                    yield from _batch_requests(db, instance, job_id, f"takeover:{runs[0].run_id}")
                for run in runs:  # a sweep that finished meanwhile needs nobody
                    dead_runs.mark_taken_over(instance, run, by="daemon")
    if not orphans:
        yield dg.SkipReason(f"reported {len(ended)} dead runs failed" if ended else "no dead runs")


def _by_sweep(runs: list[dg.DagsterRun]) -> dict[str | None, list[dg.DagsterRun]]:
    by_sweep: dict[str | None, list[dg.DagsterRun]] = {}
    for run in runs:
        by_sweep.setdefault(run.tags.get(JOB_ID_TAG), []).append(run)
    return by_sweep


def _unfinished(db: Store, job_id: str) -> bool:
    try:
        return db.get_job(job_id)["status"] in ("pending", "running")
    except NotFound:
        return False
