"""The one interface every table backend (SQLite, Postgres, Supabase REST) implements, and who
writes which columns.

Rows are plain dicts keyed by the column names of `storage.schema`. Timestamps are timezone-aware
UTC datetimes on the way in and out. Every write is an idempotent upsert on the table's key
(`schema.CONFLICT_KEYS`), done in bulk: one round trip per chunk, never one per row.

One owner per column group (COLUMN_GROUPS; a test checks every column has exactly one):
- registration: `sweeps.lifecycle.register_sweep` writes a sweep's job row and its runs'
  identity and parameters, once;
- status: `sweeps.lifecycle` moves the job through pending, running, completed or failed
  (`mark_started`, `record_progress`, `finish_job`, `fail_job`) and a run from pending to
  running (`mark_started`);
- results: a run's outcome, its metrics and the sweep's job_metrics are asset outputs, written
  through `write_rows` (the IO manager's write path). A run whose Dagster run died is failed by
  `lifecycle.fail_unfinished` through that same path; `sweeps.summary` copies each pair's
  trading effect onto its runs' metrics;
- artifacts: where a run's files are (the run_artifacts asset, through `write_rows`);
- notes: people (jobs.notes), never the pipeline.
Keys (job_id, run_id, id) go with every row; created_at and updated_at are set by the store.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from typing import Any

Row = dict[str, Any]


COLUMN_GROUPS: dict[str, dict[str, tuple[str, ...]]] = {
    "jobs": {
        "registration": ("sweep_type", "description", "n_agents", "maturity_days", "kappas", "concentrations", "mus",
                         "outside_mid_ratios", "seeds", "cash_accounting", "executor", "cloud", "spec", "provenance",
                         "total_runs", "artifact_policy"),
        "status": ("status", "started_at", "completed_at", "error", "completed_runs", "failed_runs"),
        "notes": ("notes",),
    },
    "runs": {
        "registration": ("regime", "n_agents", "maturity_days", "kappa", "concentration", "mu", "outside_mid_ratio",
                         "seed", "cash_accounting"),
        "status": ("started_at",),
        # status moves pending -> running in lifecycle.mark_started, to its outcome here.
        "results": ("status", "execution_time_ms", "modal_call_id", "error", "completed_at"),
        "artifacts": ("artifact_base", "artifact_urls"),
    },
    "metrics": {"results": ("delta_total", "phi_total", "delta_clean", "n_defaults", "n_clears", "n_clears_tracked",
                            "time_to_stability", "last_sim_day", "trading_effect", "total_trades", "total_trade_volume",
                            "trade_volume_face", "cascade_fraction", "total_loss", "total_loss_pct", "raw_metrics")},
    "job_events": {"status": ("event_type", "timestamp", "details")},
    "job_metrics": {"results": ("n_comparisons", "n_pairs", "mean_trading_effect", "min_trading_effect",
                                "max_trading_effect", "std_trading_effect", "positive_effects", "negative_effects",
                                "neutral_effects", "mean_delta_passive", "mean_delta_active", "mean_phi_passive",
                                "mean_phi_active", "mean_trading_effect_clean", "raw_summary", "trading_effect_ci_low",
                                "trading_effect_ci_high")},
}
KEY_AND_STAMP_COLUMNS = ("job_id", "run_id", "id", "created_at", "updated_at")


class StoreError(RuntimeError):
    """A backend refused or could not take a read or write. The message names the backend and
    never carries a secret (no keys, no passwords in URLs)."""

    def __init__(self, backend: str, message: str, *, transient: bool = False):
        self.backend = backend
        self.transient = transient
        super().__init__(f"{backend}: {message}")


class NotFound(StoreError):
    """The job (or other record) asked for does not exist."""


class Store(ABC):
    """Jobs, runs, metrics, job events and job metrics, in one backend."""

    backend: str  # "sqlite", "postgres" or "supabase-rest": named in errors

    # --- jobs -------------------------------------------------------------------------
    @abstractmethod
    def save_job(self, job: Row) -> None:
        """Insert or update a job row (upsert on job_id)."""

    @abstractmethod
    def get_job(self, job_id: str) -> Row:
        """The job row; raises NotFound."""

    @abstractmethod
    def list_jobs(self, status: str | None = None, limit: int = 100, offset: int = 0) -> list[Row]:
        """Jobs, newest first, optionally of one status."""

    @abstractmethod
    def update_job(self, job_id: str, **fields: Any) -> None:
        """Set some columns of a job (status transitions, counts, error, timestamps); updated_at
        is set by the store. Raises NotFound."""

    @abstractmethod
    def delete_job(self, job_id: str) -> None:
        """Remove a job and, by cascade, its runs, metrics, events and job_metrics."""

    # --- events -----------------------------------------------------------------------
    @abstractmethod
    def log_events(self, events: Sequence[Row]) -> None:
        """Append job_events rows ({job_id, event_type, details, timestamp?})."""

    def log_event(self, job_id: str, event_type: str, details: dict | None = None) -> None:
        self.log_events([{"job_id": job_id, "event_type": event_type, "details": details or {}}])

    @abstractmethod
    def list_events(self, job_id: str) -> list[Row]:
        """A job's events, oldest first."""

    # --- runs and metrics -------------------------------------------------------------
    @abstractmethod
    def upsert_runs(self, rows: Sequence[Row]) -> None:
        """Bulk upsert on run_id; columns absent from a row keep their stored value."""

    @abstractmethod
    def upsert_metrics(self, rows: Sequence[Row]) -> None:
        """Bulk upsert on run_id."""

    @abstractmethod
    def list_runs(self, job_id: str, status: str | None = None, run_ids: Iterable[str] | None = None) -> list[Row]:
        """All runs of a job (every page), optionally of one status or a set of run ids."""

    @abstractmethod
    def get_metrics(self, run_ids: Iterable[str]) -> list[Row]:
        """The metrics rows of these runs (every page)."""

    @abstractmethod
    def run_counts(self, job_id: str) -> dict[str, int]:
        """Number of the job's runs by status."""

    def completed_run_ids(self, job_id: str) -> set[str]:
        """Runs of the job that finished and have metrics: a resumed sweep skips them."""
        done = {r["run_id"] for r in self.list_runs(job_id, status="completed")}
        return {m["run_id"] for m in self.get_metrics(done)} if done else set()

    @abstractmethod
    def query_results(
        self,
        where: Any = None,
        *,
        job_id: str | None = None,
        regime: str | None = None,
        order_by: str | None = None,
        descending: bool = False,
        limit: int | None = None,
    ) -> list[Row]:
        """Rows of the `run_results` view (runs joined with metrics). `where` is a parsed filter
        expression (`storage.filters`), translated into the backend's own query language with
        values passed as parameters, never pasted into the query text."""

    # --- job metrics ------------------------------------------------------------------
    @abstractmethod
    def save_job_metrics(self, row: Row) -> None:
        """Upsert on job_id."""

    @abstractmethod
    def get_job_metrics(self, job_id: str) -> Row | None:
        """The job_metrics row, or None if the aggregate was not written yet."""

    # --- housekeeping -----------------------------------------------------------------
    def ping(self) -> None:
        """One cheap read; raises StoreError if the backend cannot be reached."""
        self.list_jobs(limit=1)

    def close(self) -> None:
        """Release connections."""


# --- the write path of results and artifacts ----------------------------------------------------

_BULK_WRITERS = {
    "runs": lambda store, rows: store.upsert_runs(rows),
    "metrics": lambda store, rows: store.upsert_metrics(rows),
    "job_metrics": lambda store, rows: [store.save_job_metrics(r) for r in rows],
}


def write_rows(store: Store, table: str, rows: Sequence[Row]) -> None:
    """The one write path of asset outputs (the IO manager's) and of the failure that stands in
    for a run's missing output (`lifecycle.fail_unfinished`): a bulk upsert on the table's key."""
    from bilancio_pipeline.storage.schema import TABLES

    if table not in _BULK_WRITERS:
        raise ValueError(f"results are written to {sorted(_BULK_WRITERS)}, not to {table!r}")
    unknown = {c for r in rows for c in r} - set(TABLES[table].columns.keys())
    if unknown:
        raise ValueError(f"rows for table {table!r} have columns the schema does not: {sorted(unknown)}")
    if rows:
        _BULK_WRITERS[table](store, list(rows))
