"""What runs inside a Modal container: simulations, each on its own, with their artifacts
stored from the container itself.

Where the artifacts go is decided by the container's environment (the `bilancio-r2` secret):
- BILANCIO_R2_BUCKET set: the project's R2 store (`storage.artifacts.s3`) under
  `{job_id}/runs/{run_id}/…`, the same keys and `s3://` URLs a local run gets, so
  `artifacts url` and `artifacts download` work alike; nothing passes through the orchestrator.
- otherwise: the results volume, `{job_id}/runs/{run_id}/…`, named `modal://{volume}/…`.

Uploads go to a small thread pool, so one run's files travel while the next run simulates.
A run that raises fails alone (its result says why); only something that kills the whole
container (OOM, segfault) fails the input, and the caller re-sends that input's runs one by one.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bilancio_pipeline.compute.uploads import not_stored, store_run
from bilancio_pipeline.storage.artifacts.base import ArtifactStore, plain_name, run_prefix

SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # one folder name, never a path
UPLOAD_THREADS = 8


def r2_from_env() -> ArtifactStore | None:
    """The R2 store the container's environment names, or None (keep artifacts on the volume)."""
    if not os.environ.get("BILANCIO_R2_BUCKET"):
        return None
    from bilancio_pipeline.storage.config import artifacts_from_env

    return artifacts_from_env()


def describe(r2: ArtifactStore | None, volume: str) -> dict[str, str]:
    """Where this container puts artifacts, without secrets (the client compares it with its own)."""
    if r2 is None:
        return {"backend": "modal", "volume": volume}
    return {"backend": "r2", "bucket": getattr(r2, "bucket", ""), "endpoint_url": getattr(r2, "endpoint_url", "")}


class Runner:
    """Runs tasks ({run_id, job_id, params}) in this container, one at a time."""

    def __init__(self, results_root: Path, volume: str, r2: ArtifactStore | None,
                 simulate: Callable[..., Any] | None = None):
        from bilancio_pipeline.engine import run_simulation

        self.results_root = Path(results_root)
        self.volume = volume
        self.r2 = r2
        self.simulate = simulate or run_simulation
        self._uploads = ThreadPoolExecutor(UPLOAD_THREADS, thread_name_prefix="upload") if r2 else None

    def run(self, task: dict[str, Any]) -> tuple[dict[str, Any], Future | None]:
        """Simulate one task. Returns its result and, on R2, the future of its upload (the
        result's artifacts are filled in by `finish`). Never raises for a failing run."""
        from bilancio_pipeline.engine import RunParams

        run_id, job_id = str(task.get("run_id", "")), str(task.get("job_id", ""))
        started = time.perf_counter()
        out_dir: Path | None = None
        try:
            for field, value in (("run_id", run_id), ("job_id", job_id)):
                if not SAFE_ID.fullmatch(value):
                    raise ValueError(f"invalid {field}={value!r}: must be letters, digits, '.', '_' or '-'")
            params = RunParams.from_dict(dict(task.get("params") or {}))
            policy = str(task.get("artifact_policy") or "all")
            out_dir = self._folder(job_id, run_id) if policy != "none" else None
            result = self.simulate(params, out_dir=out_dir, artifact_policy=policy)
        except Exception as exc:  # this run fails; the chunk goes on
            if out_dir is not None and self.r2 is not None:
                shutil.rmtree(out_dir, ignore_errors=True)
            return {"run_id": run_id, "ok": False, "error": f"{type(exc).__name__}: {exc}",
                    "wall_ms": (time.perf_counter() - started) * 1000.0}, None
        done = {"run_id": run_id, "job_id": job_id, "ok": True, "summary": dict(result.summary),
                "day_metrics": list(result.day_metrics or []), "artifacts": {}, "artifacts_error": None,
                "wall_ms": (time.perf_counter() - started) * 1000.0}
        if out_dir is None:  # the sweep keeps no files
            return done, None
        if self._uploads is None:
            base = f"modal://{self.volume}/{run_prefix(job_id, run_id)}"
            # named like a store's listing: the plain name, for the file as kept (maybe `.gz`)
            done["artifacts"] = {plain_name(f)[0]: f"{base}/{f}" for f in _files_below(out_dir)}
            return done, None
        return done, self._uploads.submit(self._upload, job_id, run_id, out_dir)

    def finish(self, done: dict[str, Any], upload: Future | None) -> dict[str, Any]:
        """Wait for a run's upload; a failed upload keeps the metrics and says what is missing."""
        if upload is not None:
            try:
                done["artifacts"] = upload.result()
            except Exception as exc:
                done["artifacts_error"] = not_stored(exc)
        return done

    def _upload(self, job_id: str, run_id: str, folder: Path) -> dict[str, str]:
        try:
            return store_run(self.r2, job_id, run_id, folder)
        finally:
            shutil.rmtree(folder, ignore_errors=True)  # scratch space: uploaded or given up

    def run_chunk(self, tasks: list[dict[str, Any]], commit: Callable[[], None]) -> dict[str, Any]:
        """Every task of one Modal input, each on its own; then one volume commit for all."""
        wall0, cpu0 = time.perf_counter(), time.process_time()
        started = [self.run(task) for task in tasks]
        results = [self.finish(done, upload) for done, upload in started]
        if self.r2 is None:
            commit()
        return {"results": results, "usage": {
            "wall_seconds": time.perf_counter() - wall0,
            "cpu_seconds": time.process_time() - cpu0,  # this process, upload threads included
            "peak_memory_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }}

    def close(self) -> None:
        if self._uploads is not None:
            self._uploads.shutdown(wait=True)

    def _folder(self, job_id: str, run_id: str) -> Path:
        """A clean folder for the run: on the volume, or scratch space to upload from."""
        folder = self.results_root / run_prefix(job_id, run_id) if self.r2 is None else self._scratch(job_id, run_id)
        if folder.exists():  # a re-sent run starts clean rather than mixing two attempts
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        return folder

    def _scratch(self, job_id: str, run_id: str) -> Path:
        return Path(tempfile.gettempdir()) / "bilancio-runs" / job_id / run_id


def _files_below(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
