"""Storing a run's artifact folder, with retries: one rule for the orchestrator (runs of the
local pool) and for the Modal containers (runs written to R2 from the container itself).

The store's own client already retries single requests (botocore's standard mode); this
retries the whole run's upload a few times more, with jittered back-off, so a refusal that
outlasts the client's retries (a throttled bucket, a restarting endpoint) costs a delay, not
the run's artifacts.
"""

from __future__ import annotations

from pathlib import Path

from tenacity import retry, stop_after_attempt, wait_exponential_jitter

from bilancio_pipeline.storage.artifacts.base import ArtifactStore

UPLOAD_ATTEMPTS = 4
UPLOAD_WAIT_INITIAL, UPLOAD_WAIT_MAX = 0.2, 2.0  # seconds between attempts (exponential, jittered)


def store_run(artifacts: ArtifactStore, job_id: str, run_id: str, folder: str | Path) -> dict[str, str]:
    """Move the run's folder into the store (the caller throws the folder away afterwards);
    returns {relative name: URL}. Raises the last error after UPLOAD_ATTEMPTS attempts."""

    @retry(stop=stop_after_attempt(UPLOAD_ATTEMPTS), wait=wait_exponential_jitter(initial=UPLOAD_WAIT_INITIAL, max=UPLOAD_WAIT_MAX), reraise=True)
    def attempt() -> dict[str, str]:
        return artifacts.move_run(job_id, run_id, Path(folder))

    return attempt()


def not_stored(exc: BaseException) -> str:
    """The message a completed run keeps on its row when its artifacts could not be stored."""
    return f"artifacts not stored after {UPLOAD_ATTEMPTS} attempts: {type(exc).__name__}: {exc}"
