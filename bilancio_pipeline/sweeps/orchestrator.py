"""What a sweep runs next, when it is complete, and what a batch that ended badly means.

Plain Python over a `Store`. Two drivers ask it the same questions: the daemon's sensors
(defs/sensors.py, with Dagster's facts gathered by defs/orchestration.py) and the command
line's in-process path (defs/inprocess.py). Neither decides anything on its own.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from bilancio_pipeline.storage.base import NotFound, Store
from bilancio_pipeline.sweeps import lifecycle

# One batch's process pool already spans every core (or fans out over Modal), and a batch stores
# its finished runs every few seconds, which a retry skips: so a sweep is one batch, as large as
# this. More batches of one sweep would only add Dagster run start-ups (seconds each) and crowd
# the cores with pools; the other batch slots stay free for other sweeps.
MAX_BATCH = 10_000


@dataclass(frozen=True)
class Batch:
    """A contiguous range of a sweep's runs, in partition order: one Dagster run."""

    run_ids: tuple[str, ...]

    @property
    def first(self) -> str:
        return self.run_ids[0]

    @property
    def last(self) -> str:
        return self.run_ids[-1]


def batch_slots() -> int:
    """Sweep batches that run at once: BILANCIO_MAX_CONCURRENT_RUNS, else one per core."""
    return int(os.environ.get("BILANCIO_MAX_CONCURRENT_RUNS") or os.cpu_count() or 2)


def batch_size() -> int:
    """Runs per Dagster run: BILANCIO_BATCH_SIZE if set, else MAX_BATCH."""
    return max(1, int(os.environ.get("BILANCIO_BATCH_SIZE") or MAX_BATCH))


def split(run_ids: Sequence[str], size: int) -> list[Batch]:
    return [Batch(tuple(run_ids[i:i + size])) for i in range(0, len(run_ids), size)]


def next_batches(store: Store, job_id: str, partition_order: Sequence[str], size: int | None = None,
                 busy: Collection[str] = frozenset()) -> list[Batch]:
    """The sweep's runs that have not completed (pending, failed, or left running by a dead
    batch), in partition order, as contiguous batches. Completed runs are never among them, nor
    the `busy` ones (a batch in flight has them); a batch never spans a busy run, since a batch
    takes every unfinished run between its first and its last."""
    order = {key: i for i, key in enumerate(partition_order)}
    unfinished = sorted((r["run_id"] for r in store.list_runs(job_id) if r["status"] != "completed"),
                        key=lambda key: order.get(key, len(order)))
    segments: list[list[str]] = [[]]
    for key in unfinished:
        if key in busy:
            segments.append([])
        else:
            segments[-1].append(key)
    size = size or batch_size()
    return [batch for segment in segments for batch in split(segment, size)]


def metrics_due(store: Store, job_id: str, busy: bool) -> str | None:
    """A key naming the sweep's state when its job_metrics should be computed now (every run has
    finished or failed, and the sweep is not `busy`: no batch of it queued, running or about to be
    retried, no job_metrics already on its way), else None. A new state gives a new key, so a
    resumed sweep is aggregated again."""
    if busy:
        return None
    try:
        if store.get_job(job_id)["status"] not in ("pending", "running"):  # finished already
            return None
    except NotFound:  # the sweep was deleted meanwhile
        return None
    counts = store.run_counts(job_id)
    if not lifecycle.is_settled(counts):
        return None
    return f"job_metrics:{job_id}:" + "-".join(f"{k}{v}" for k, v in sorted(counts.items()))


def sweeps_due(store: Store, busy: Callable[[str], bool]) -> list[tuple[str, str]]:
    """(job_id, key) of every unfinished sweep whose job_metrics is due: the safety net that
    catches what the run-status hops missed (for example while the daemon was down)."""
    due = []
    for job in lifecycle.unfinished_jobs(store):
        key = metrics_due(store, job["job_id"], busy(job["job_id"]))
        if key:
            due.append((job["job_id"], key))
    return due


def batch_ended_badly(store: Store, job_id: str, run_ids: Sequence[str], reason: str, will_retry: bool) -> list[str]:
    """A batch's Dagster run failed, was cancelled or its worker died. If Dagster will retry it
    (batches are idempotent: completed runs are skipped), its runs wait for the retry as they
    are. Otherwise the runs it left pending or running become `failed` with the reason, so the
    sweep can finish (`failed`, never `running`) and a re-launch re-runs exactly those.
    Returns the runs marked failed."""
    if will_retry:
        return []
    return lifecycle.fail_unfinished(store, job_id, run_ids, reason)
