"""Tell someone a sweep ended: with BILANCIO_WEBHOOK_URL set, POST {job_id, status, counts,
job_metrics} as JSON when a sweep completes or fails.

The payload is read from the store by the caller (the store may be closed right after); the
POST happens on a background thread, retried with exponential backoff for at most
DEADLINE_S, so a slow or dead receiver never holds up the sweep. The thread is not a daemon:
a short-lived process (the CLI) waits for it at exit, at most DEADLINE_S plus one timeout.
The URL often carries a token (Slack, Discord): logs show only its scheme and host.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from typing import Any
from urllib.parse import urlsplit

from tenacity import retry, retry_if_exception, stop_after_attempt, stop_after_delay, wait_exponential

from bilancio_pipeline.storage import log_redaction

ENV = "BILANCIO_WEBHOOK_URL"
ATTEMPTS = 5
DEADLINE_S = 30.0
TIMEOUT_S = 5.0
log = logging.getLogger("bilancio_pipeline.webhook")
_threads: list[threading.Thread] = []


def shown(url: str) -> str:
    """The URL as logs may show it: scheme and host only."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}/…"


def _retryable(exc: BaseException) -> bool:
    import httpx

    if isinstance(exc, httpx.HTTPStatusError):  # the receiver's fault may pass; a refusal will not
        return exc.response.status_code >= 500 or exc.response.status_code == 429
    return isinstance(exc, httpx.TransportError)


def post(url: str, payload: dict[str, Any], *, wait_initial: float = 0.5, wait_max: float = 8.0) -> int:
    """POST the payload, retrying transient failures; returns the final HTTP status."""
    import httpx  # only when a webhook is configured: the sweep code path stays light


    @retry(stop=stop_after_attempt(ATTEMPTS) | stop_after_delay(DEADLINE_S), reraise=True,
           wait=wait_exponential(multiplier=wait_initial, max=wait_max), retry=retry_if_exception(_retryable))
    def attempt() -> int:
        response = httpx.post(url, content=json.dumps(payload, default=str),
                              headers={"content-type": "application/json"}, timeout=TIMEOUT_S)
        response.raise_for_status()
        return response.status_code

    return attempt()


def notify(job_id: str, status: str, counts: dict[str, int], job_metrics: dict[str, Any] | None) -> threading.Thread | None:
    """Start the POST in the background if a webhook is configured; never raises."""
    url = os.environ.get(ENV, "").strip()
    if not url:
        return None
    log_redaction.install()  # httpx logs each request's URL at INFO
    payload = {"job_id": job_id, "status": status, "counts": counts, "job_metrics": job_metrics}

    def send() -> None:
        try:
            code = post(url, payload)
            log.info("webhook %s: sweep %s %s delivered (HTTP %s)", shown(url), job_id, status, code)
        except Exception as exc:  # a notification must never fail anything: say so and move on
            detail = log_redaction.redact(str(exc)).replace(url, shown(url))
            log.warning("webhook %s: sweep %s %s not delivered after retries: %s: %s",
                        shown(url), job_id, status, type(exc).__name__, detail)

    thread = threading.Thread(target=send, name=f"webhook-{job_id}")
    thread.start()
    _threads[:] = [t for t in _threads if t.is_alive()] + [thread]
    return thread


def wait(timeout: float | None = None) -> None:
    """Wait for the notifications still being sent (tests; a caller about to exit)."""
    for thread in list(_threads):
        thread.join(timeout)


def notify_failed_sweep(store: Any, job_id: str) -> threading.Thread | None:
    """`notify` for a sweep that failed as a whole: counts and job_metrics as far as the store
    still answers (it may be what failed)."""
    if not os.environ.get(ENV, "").strip():
        return None
    try:
        counts, job_metrics = store.run_counts(job_id), store.get_job_metrics(job_id)
    except Exception:
        counts, job_metrics = {}, None
    return notify(job_id, "failed", counts, job_metrics)
