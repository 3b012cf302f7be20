"""A store that rides out a database outage: every call that fails with a transient StoreError
(connection refused or dropped, server restarting, pool timeout) is tried again, with
exponential backoff and jitter, until it succeeds or a deadline passes.

Why retries and no local outbox: a batch writes its rows once, at its end, in one idempotent
upsert per table; while the database is away the batch simply waits for it (up to
BILANCIO_STORE_RETRY_SECONDS, default 120 s), with the results in memory, and says so in a
warning. An outage longer than that fails the batch's Dagster run, its runs are marked failed,
and re-launching the sweep re-runs exactly those: nothing finished is lost and nothing is
written twice.

That long wait is for a database that answered before and went away. A sweep is launched only
after `first_contact` has heard from the store: one that never answers (a wrong host or port, a
server not started) fails in seconds with one line naming it.
"""

from __future__ import annotations

import abc
import logging
import os
import time
from collections.abc import Callable
from typing import Any

from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_exponential_jitter

from bilancio_pipeline.storage.base import Store, StoreError

DEFAULT_RETRY_SECONDS = 120.0
FIRST_CONTACT_SECONDS = 8.0  # plus at most one connect timeout (10 s) for a host that never replies
log = logging.getLogger(__name__)

# Every Store method that talks to the backend.
_CALLS = ("save_job", "get_job", "list_jobs", "update_job", "delete_job", "log_events", "log_event", "list_events",
          "upsert_runs", "upsert_metrics", "list_runs", "get_metrics", "run_counts", "completed_run_ids",
          "query_results", "save_job_metrics", "get_job_metrics")


def retry_seconds() -> float:
    raw = os.environ.get("BILANCIO_STORE_RETRY_SECONDS", "")
    try:
        value = float(raw) if raw.strip() else DEFAULT_RETRY_SECONDS
    except ValueError:
        raise ValueError(f"BILANCIO_STORE_RETRY_SECONDS must be a number of seconds, got {raw!r}") from None
    if value < 0:
        raise ValueError(f"BILANCIO_STORE_RETRY_SECONDS must be >= 0, got {value}")
    return value


def _transient(error: BaseException) -> bool:
    return isinstance(error, StoreError) and error.transient


def _log_retry(state) -> None:
    # The StoreError's text names the backend and never carries a password.
    log.warning("store unavailable, retrying in %.1f s (attempt %d; waiting up to %.0f s in all, "
                "BILANCIO_STORE_RETRY_SECONDS): %s", state.next_action.sleep if state.next_action else 0.0,
                state.attempt_number, retry_seconds(), state.outcome.exception())


def first_contact(store: Store, seconds: float = FIRST_CONTACT_SECONDS) -> None:
    """Raise StoreError with one line naming the database (never its password) unless the store
    answers within `seconds`: for the start of a sweep, where waiting out the long outage
    deadline for a store that never answered would only keep the user waiting in silence."""
    inner = getattr(store, "inner", store)
    deadline = time.monotonic() + seconds
    while True:
        try:
            inner.ping()
            return
        except StoreError as exc:
            if not exc.transient or time.monotonic() >= deadline:
                detail = " ".join(str(exc).removeprefix(f"{exc.backend}: ").split())
                raise StoreError(exc.backend, f"the results database did not answer within {seconds:.0f} s: {detail}",
                                 transient=exc.transient) from None
        time.sleep(0.5)


class RetryingStore(Store):
    """Wraps a Store; transient failures are retried under a deadline, the rest raise at once."""

    def __init__(self, inner: Store, deadline_seconds: float | None = None,
                 initial_wait: float = 0.25, max_wait: float = 8.0):
        self.inner = inner
        self.backend = inner.backend
        # `deadline_s`, as on the REST store: the CLI shortens it so a person is not kept waiting.
        self.deadline_s = retry_seconds() if deadline_seconds is None else deadline_seconds
        self._initial_wait, self._max_wait = initial_wait, max_wait

    def __repr__(self) -> str:
        return f"RetryingStore({self.inner!r})"

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        method: Callable = getattr(self.inner, name)
        retrying = Retrying(
            retry=retry_if_exception(_transient),
            wait=wait_exponential_jitter(initial=self._initial_wait, max=self._max_wait),
            stop=stop_after_delay(self.deadline_s),
            before_sleep=_log_retry,
            reraise=True,
        )
        return retrying(method, *args, **kwargs)

    def ping(self) -> None:
        # A reachability probe answers now: retrying it would only hide the answer.
        self.inner.ping()

    def close(self) -> None:
        self.inner.close()

    def __getattr__(self, name: str) -> Any:
        # Anything beyond the Store interface (a backend's own extras) goes to the inner store.
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __enter__(self) -> RetryingStore:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _delegate(name: str) -> Callable:
    def call(self: RetryingStore, *args: Any, **kwargs: Any) -> Any:
        return self._call(name, *args, **kwargs)

    call.__name__ = name
    call.__doc__ = getattr(Store, name).__doc__
    return call


for _name in _CALLS:
    setattr(RetryingStore, _name, _delegate(_name))
abc.update_abstractmethods(RetryingStore)
