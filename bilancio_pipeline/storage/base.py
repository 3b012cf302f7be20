"""The one interface every table backend (SQLite, Postgres, Supabase REST) implements.

Rows are plain dicts keyed by the column names of `storage.schema`. Timestamps are timezone-aware
UTC datetimes on the way in and out. Every write is an idempotent upsert on the table's key
(`schema.CONFLICT_KEYS`), done in bulk: one round trip per chunk, never one per row.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from typing import Any

Row = dict[str, Any]


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
