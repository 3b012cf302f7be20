"""`bilancio-pipeline artifacts`: fetch a job's stored run artifacts, or a link to one.

Files land under --out keeping the store's layout below the job: `runs/<run_id>/<name>`
(plus `job_manifest.json` and `report.html` when the whole job is fetched).
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import click

from bilancio_pipeline.cli.errors import CommandError, friendly_errors, open_store
from bilancio_pipeline.cli.results import require_job
from bilancio_pipeline.storage.artifacts.base import ArtifactStore, run_key, run_prefix

DOWNLOAD_THREADS = 8


def _artifacts(job: dict) -> ArtifactStore:
    import os

    from bilancio_pipeline.maintenance.cleanup import open_volume
    from bilancio_pipeline.storage.config import artifacts_from_env

    # A sweep run on Modal with no R2 configured kept its artifacts on the Modal Volume (the
    # containers store on R2 exactly when it is configured, here and in their secret alike).
    on_volume = job.get("executor") == "modal" and not os.environ.get("BILANCIO_R2_BUCKET")
    return open_volume("modal", artifacts_from_env) if on_volume else artifacts_from_env()


def _require_run(store, job_id: str, run_id: str) -> None:
    if not store.list_runs(job_id, run_ids=[run_id]):
        raise CommandError(f"run not found in job {job_id}: {run_id}")


@click.group("artifacts")
def command():
    """Download run artifacts or get a time-limited link to one."""


@command.command("download")
@click.argument("job_id")
@click.option("--run", "run_id", default="all", show_default=True, help="One run's id, or all.")
@click.option("--out", "--output", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Folder to write into [default: ./<JOB_ID>].")
@friendly_errors
def download(job_id, run_id, out_dir):
    """Download a job's artifacts (every run, or one) with a progress bar."""
    with open_store() as store:
        job = require_job(store, job_id)
        if run_id != "all":
            _require_run(store, job_id, run_id)
    artifacts = _artifacts(job)
    job_prefix = f"{job_id}/"
    prefix = job_prefix if run_id == "all" else run_prefix(job_id, run_id) + "/"
    keys = sorted(artifacts.list_keys(prefix))
    if not keys:
        what = f"job {job_id}" if run_id == "all" else f"run {run_id} of job {job_id}"
        raise CommandError(f"no artifacts are stored for {what} (in {artifacts.backend})")
    shown_dir = out_dir or Path(job_id)
    out_dir = shown_dir.resolve()
    targets = [(key, _target(out_dir, key[len(job_prefix):])) for key in keys]
    total_bytes = 0
    # Objects download in parallel (S3 clients are thread-safe); the bar moves as each lands.
    with ThreadPoolExecutor(max_workers=DOWNLOAD_THREADS) as pool, click.progressbar(
        length=len(targets), label=f"Downloading {len(keys)} files", file=sys.stderr,
    ) as bar:
        futures = [pool.submit(_fetch, artifacts, key, target) for key, target in targets]
        try:
            for future in as_completed(futures):
                total_bytes += future.result()
                bar.update(1)
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    click.echo(f"Downloaded {len(keys)} files ({_size(total_bytes)}) to {shown_dir}")


def _fetch(artifacts: ArtifactStore, key: str, target: Path) -> int:
    data = artifacts.get_bytes(key)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return len(data)


def _target(out_dir: Path, relative: str) -> Path:
    """Where a key lands; a key that would escape the folder (`..`) is refused."""
    target = (out_dir / relative).resolve()
    if not target.is_relative_to(out_dir) or target == out_dir:
        raise CommandError(f"refusing to write outside {out_dir}: {relative!r}")
    return target


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


@command.command("url")
@click.argument("job_id")
@click.argument("run_id")
@click.argument("name")
@click.option("--expires", type=click.IntRange(min=1, max=7 * 24 * 3600), default=3600, show_default=True,
              help="Seconds the link stays valid (R2 allows up to 7 days).")
@friendly_errors
def url(job_id, run_id, name, expires):
    """Print a time-limited download link for one artifact, e.g. out/events.jsonl."""
    with open_store() as store:
        job = require_job(store, job_id)
        _require_run(store, job_id, run_id)
    artifacts = _artifacts(job)
    key = run_key(job_id, run_id, name)
    stored = artifacts.list_keys(run_prefix(job_id, run_id) + "/")
    if key not in stored:
        names = ", ".join(k[len(run_prefix(job_id, run_id)) + 1:] for k in sorted(stored)) or "none"
        raise CommandError(f"no artifact {name!r} for run {run_id}; stored: {names}")
    click.echo(artifacts.signed_url(key, expires_seconds=expires))
