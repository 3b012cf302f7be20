"""The Modal app: simulations in the cloud, results on a Modal Volume.

Deploy once (and again after every code change; the client checks the deployed version):

    modal deploy bilancio_pipeline/modal_app.py

The image holds only what the engine needs, at the versions pinned in `requirements.lock`,
plus this package's source. Importing this module needs no Modal token: it only defines.

Settings read at deploy time (environment variables):
    BILANCIO_MODAL_APP      the app name                     (default bilancio-pipeline)
    BILANCIO_MODAL_VOLUME   the results volume               (default bilancio-results)
    BILANCIO_MODAL_SECRETS  comma-separated secret names     (default bilancio-supabase,bilancio-r2;
                            set it empty to attach none)
    BILANCIO_MODAL_MAX_CONTAINERS  the most containers run_simulation may use at once (default 100)
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import modal

import bilancio_pipeline
from bilancio_pipeline.compute.modal import RunFailed, code_fingerprint

APP_NAME = os.environ.get("BILANCIO_MODAL_APP") or "bilancio-pipeline"
VOLUME_NAME = os.environ.get("BILANCIO_MODAL_VOLUME") or "bilancio-results"
SECRET_NAMES = tuple(
    name.strip() for name in os.environ.get("BILANCIO_MODAL_SECRETS", "bilancio-supabase,bilancio-r2").split(",") if name.strip()
)
MAX_CONTAINERS = int(os.environ.get("BILANCIO_MODAL_MAX_CONTAINERS") or 100)
RESULTS_MOUNT = "/results"
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # one folder name, never a path
PYTHON_VERSION = "3.11"

# The distributions `bilancio_pipeline.engine` imports (a test checks this against its imports).
ENGINE_DISTRIBUTIONS = ("numpy", "pyyaml", "orjson")
LOCK_FILE = Path(__file__).resolve().parent.parent / "requirements.lock"


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def engine_requirements(lock_file: Path = LOCK_FILE, distributions: tuple[str, ...] = ENGINE_DISTRIBUTIONS) -> list[str]:
    """The lock file's exact pins (`name==version`) of the engine's distributions."""
    if not lock_file.is_file():
        raise FileNotFoundError(f"{lock_file.name} not found next to the package: deploy from a checkout of the repository")
    pins = {}
    for line in lock_file.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[_normalize(name.split("[", 1)[0])] = f"{name.strip()}=={version.strip()}"
    missing = [d for d in distributions if _normalize(d) not in pins]
    if missing:
        raise ValueError(f"{lock_file.name} has no exact pin for {', '.join(missing)}")
    return [pins[_normalize(d)] for d in distributions]


def results_root() -> Path:
    """Where the results volume is mounted. BILANCIO_MODAL_RESULTS_DIR points the functions at
    a local folder when they run in-process (`.local()`), which has no volume mounted."""
    return Path(os.environ.get("BILANCIO_MODAL_RESULTS_DIR") or RESULTS_MOUNT)


# In the container this module is imported again; the image is already built there, and the
# lock file is not part of the package source, so it is read only where the app is deployed.
image = (
    modal.Image.debian_slim(python_version=PYTHON_VERSION)
    .uv_pip_install(*(engine_requirements() if modal.is_local() else []))
    .add_local_python_source("bilancio_pipeline")
)
results_volume = modal.Volume.from_name(VOLUME_NAME, create_if_missing=True)
secrets = [modal.Secret.from_name(name) for name in SECRET_NAMES]

app = modal.App(APP_NAME, image=image, secrets=secrets)


def _files_below(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def _commit_volume() -> None:
    if not modal.is_local():  # in-process runs write to a plain folder
        results_volume.commit()


@app.function(volumes={RESULTS_MOUNT: results_volume}, timeout=7200, memory=2048, max_containers=MAX_CONTAINERS)
def run_simulation(task: dict[str, Any]) -> dict[str, Any]:
    """Run one simulation and keep its artifacts on the volume under {job_id}/runs/{run_id}/.

    task: {run_id, job_id, params: RunParams.to_dict()}. Returns {run_id, job_id, summary,
    day_metrics, artifacts: {name: volume-relative path}, wall_ms, version, volume, call_id}.
    A failure raises RunFailed naming the run, so the caller knows which input failed even
    when results arrive out of order.
    """
    from bilancio_pipeline.engine import RunParams
    from bilancio_pipeline.engine import run_simulation as simulate

    run_id, job_id = str(task.get("run_id", "")), str(task.get("job_id", ""))
    call_id = modal.current_function_call_id()
    started = time.perf_counter()
    relative = f"{job_id}/runs/{run_id}"
    out_dir = results_root() / relative
    try:
        for field, value in (("run_id", run_id), ("job_id", job_id)):
            if not _SAFE_ID.fullmatch(value):
                raise ValueError(f"invalid {field}={value!r}: must be letters, digits, '.', '_' or '-'")
        params = RunParams.from_dict(dict(task.get("params") or {}))
        if out_dir.exists():  # a retried run starts clean rather than mixing two attempts
            shutil.rmtree(out_dir)
        out_dir.mkdir(parents=True)
        result = simulate(params, out_dir=out_dir)
    except Exception as exc:
        try:
            _commit_volume()  # keep what the failed run wrote, for inspection
        except Exception:
            pass  # the run's own error is the one to report
        raise RunFailed(run_id, f"{type(exc).__name__}: {exc}", call_id) from None
    _commit_volume()
    # the engine names its artifacts ({name: path in the run folder}); they go back volume-relative
    written = dict(result.artifacts) or {p: p for p in _files_below(out_dir)}
    artifacts = {name: f"{relative}/{path}" for name, path in sorted(written.items())}
    return {
        "run_id": run_id,
        "job_id": job_id,
        "summary": dict(result.summary),
        "day_metrics": list(getattr(result, "day_metrics", None) or []),
        "artifacts": artifacts,
        "wall_ms": (time.perf_counter() - started) * 1000.0,  # with the volume commit
        "version": bilancio_pipeline.__version__,
        "volume": VOLUME_NAME,
        "call_id": call_id,
    }


@app.function(timeout=300, memory=1024)
def compute_aggregate_metrics(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The sweep aggregate (`engine.aggregate_job_metrics`) of the runs' rows."""
    from bilancio_pipeline.engine import aggregate_job_metrics

    return aggregate_job_metrics(rows)


@app.function(timeout=60, memory=256)
def health_check() -> dict[str, Any]:
    """The deployed code's version, which the client compares with its own before a sweep."""
    import platform

    return {
        "status": "ok",
        "version": bilancio_pipeline.__version__,
        "engine_fingerprint": code_fingerprint(),
        "app": APP_NAME,
        "volume": VOLUME_NAME,
        "python": platform.python_version(),
    }
