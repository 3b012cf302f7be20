"""Reading one job's results from a store, shared by the `jobs`, `metrics`, `artifacts` and
`report` commands."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from bilancio_pipeline.cli.errors import CommandError
from bilancio_pipeline.storage.base import NotFound, Row, Store
from bilancio_pipeline.storage.filters import Compare

PARAMETER_COLUMNS = ("kappa", "concentration", "mu", "outside_mid_ratio", "seed")
REGIME_ORDER = {"passive": 0, "active": 1}


def require_job(store: Store, job_id: str) -> Row:
    try:
        return store.get_job(job_id)
    except NotFound:
        raise CommandError(f"job not found: {job_id}") from None


def run_results(store: Store, job_id: str, status: str | None = None) -> list[Row]:
    """The job's runs, each with its metrics (None where a run has none yet), in grid order."""
    where = Compare("status", "=", status) if status else None
    rows = store.query_results(where, job_id=job_id)
    rows.sort(key=grid_order)
    return rows


def grid_order(row: Row):
    return (*(_sortable(row.get(c)) for c in PARAMETER_COLUMNS), REGIME_ORDER.get(row.get("regime"), 2), row.get("run_id") or "")


def _sortable(value: Any):
    return (value is None, value if value is not None else 0)


def duration_seconds(record: Row) -> float | None:
    """Seconds from start (or creation) to completion; None while still running."""
    start, end = record.get("started_at") or record.get("created_at"), record.get("completed_at")
    if not (start and end):
        return None
    return (_utc(end) - _utc(start)).total_seconds()


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "running"
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


def trading_pairs(rows: list[Row]) -> tuple[dict[str, Any], list[Row]]:
    """The job summary and the passive/active pairs with their trading effect, computed by the
    engine's aggregate (the same code that writes `job_metrics`)."""
    from bilancio_pipeline.engine.aggregate import aggregate_job_metrics  # heavy: only when needed

    completed = [r for r in rows if r.get("status") == "completed"]
    summary = dict(aggregate_job_metrics(completed))
    pairs = [_flat_pair(p) for p in summary.pop("pairs", [])]
    pairs.sort(key=grid_order)
    return summary, pairs


PAIR_COLUMNS = (*PARAMETER_COLUMNS, "delta_passive", "delta_active", "trading_effect")


def _flat_pair(pair: Row) -> Row:
    flat = dict(pair.get("parameters") or {})
    flat.update({k: v for k, v in pair.items() if k != "parameters"})
    return flat
