"""The default compute: a process pool on this machine.

Workers come from a forkserver that has already imported the engine, so starting one costs
milliseconds, and the pool is kept for the life of the process so a sweep's batches share it.
A worker that dies (segfault, OOM kill) fails only the task it was running: the tasks the broken
pool still owed are re-run one at a time, each in its own pool, to find the one that kills.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.util
import os
import signal
import traceback
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from bilancio_pipeline.compute.base import Compute, RunOutcome, RunTask
from bilancio_pipeline.lifetime import end_with_parent

_POOLS: dict[int, ProcessPoolExecutor] = {}


def _init_worker() -> None:
    # One simulation per core: BLAS threads inside a worker would only fight each other.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    end_with_parent(signal.SIGKILL)  # the forkserver, which ends with the pool's owner (forkserver.py)


def _context():
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["bilancio_pipeline.compute.forkserver", "bilancio_pipeline.compute.local",
                                "bilancio_pipeline.engine.run"])
    return ctx


def _new_pool(workers: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(max_workers=workers, mp_context=_context(), initializer=_init_worker)


def _pool(workers: int) -> ProcessPoolExecutor:
    if workers not in _POOLS:
        _POOLS[workers] = pool = _new_pool(workers)
        # A process started by multiprocessing (as Dagster's run workers are) joins its children
        # on exit before the pool's own exit hook runs, so it would wait on the idle workers
        # forever: shut the pool down first (before the queues' own finalizers, priority 10).
        multiprocessing.util.Finalize(pool, pool.shutdown, exitpriority=100)
    return _POOLS[workers]


def run_task(task: RunTask, artifacts_root: str | None) -> RunOutcome:
    """Run one simulation in this process; any exception becomes a failed outcome."""
    from bilancio_pipeline.engine import RunParams, run_simulation

    keeps_files = artifacts_root and task.artifact_policy != "none"
    out_dir = Path(artifacts_root) / task.run_id if keeps_files else None
    try:
        result = run_simulation(RunParams.from_dict(task.params), out_dir=out_dir, artifact_policy=task.artifact_policy)
    except Exception as exc:  # the run fails, the batch goes on
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        return RunOutcome(run_id=task.run_id, ok=False, error=detail)
    return RunOutcome(
        run_id=task.run_id,
        ok=True,
        summary=result.summary,
        day_metrics=result.day_metrics,
        artifact_dir=str(out_dir) if out_dir else None,
        artifacts=dict(result.artifacts),
        wall_ms=result.wall_ms,
    )


class LocalCompute(Compute):
    name = "local"

    def __init__(self, workers: int | None = None,
                 runner: Callable[[RunTask, str | None], RunOutcome] = run_task):
        self.workers = max(1, int(workers or os.cpu_count() or 1))
        # What a worker runs per task; a module-level function, so forkserver workers import it.
        self.runner = runner

    def run_batch(self, tasks: Sequence[RunTask], artifacts_root: str | None) -> Iterator[RunOutcome]:
        pending: dict[Future, RunTask] = {_pool(self.workers).submit(self.runner, t, artifacts_root): t for t in tasks}
        orphans: list[RunTask] = []
        # as_completed watches every future once; a wait() per result would be quadratic in the batch
        for future in as_completed(pending):
            task = pending.pop(future)  # and lets go of each result once it is handed on
            try:
                yield future.result()
            except BrokenProcessPool:
                orphans.append(task)
        if orphans:
            _POOLS.pop(self.workers, None)  # the broken pool is unusable
            yield from (self._isolated(t, artifacts_root) for t in orphans)

    def _isolated(self, task: RunTask, artifacts_root: str | None) -> RunOutcome:
        with _new_pool(1) as pool:
            try:
                return pool.submit(self.runner, task, artifacts_root).result()
            except BrokenProcessPool:
                return RunOutcome(run_id=task.run_id, ok=False, error="the worker process running this simulation died")
