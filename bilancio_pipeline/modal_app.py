"""The Modal app: simulations in the cloud, their artifacts on R2 (or the Modal Volume).

Deploy once (and again after every code change; the client checks the deployed version and
code before each batch):

    modal deploy bilancio_pipeline/modal_app.py

The image holds the engine's dependencies and boto3 (the containers store artifacts on R2
themselves), at the versions pinned in `requirements.lock`, plus this package's source.
Importing this module needs no Modal token: it only defines.

Functions: `run_simulations` (a chunk of runs per input: what the pipeline fans out),
`run_simulation` (one run), `compute_aggregate_metrics`, `health_check`.

Settings read at deploy time (environment variables):
    BILANCIO_MODAL_APP      the app name                     (default bilancio-pipeline)
    BILANCIO_MODAL_VOLUME   the results volume               (default bilancio-results)
    BILANCIO_MODAL_SECRETS  comma-separated secret names     (default bilancio-supabase,bilancio-r2;
                            set it empty to attach none)
    BILANCIO_MODAL_MAX_CONTAINERS  the most containers a simulation function may use at once (default 100)

In the containers, the attached secrets' BILANCIO_R2_* variables choose R2 for the artifacts.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import modal

import bilancio_pipeline
from bilancio_pipeline.compute.container import Runner, describe, r2_from_env
from bilancio_pipeline.compute.cost import CPU_CORES, MEMORY_MIB
from bilancio_pipeline.compute.modal import RunFailed, code_fingerprint

APP_NAME = os.environ.get("BILANCIO_MODAL_APP") or "bilancio-pipeline"
VOLUME_NAME = os.environ.get("BILANCIO_MODAL_VOLUME") or "bilancio-results"
SECRET_NAMES = tuple(
    name.strip() for name in os.environ.get("BILANCIO_MODAL_SECRETS", "bilancio-supabase,bilancio-r2").split(",") if name.strip()
)
MAX_CONTAINERS = int(os.environ.get("BILANCIO_MODAL_MAX_CONTAINERS") or 100)
RESULTS_MOUNT = "/results"
PYTHON_VERSION = "3.11"

# The distributions the container code imports: the engine's, and boto3 (with its own
# dependencies, pinned too) and tenacity for storing artifacts on R2 from the container.
# A test imports the container code with every other third-party module blocked.
IMAGE_DISTRIBUTIONS = ("numpy", "pyyaml", "orjson", "boto3", "botocore", "s3transfer", "jmespath",
                       "python-dateutil", "six", "urllib3", "tenacity")
SCALEDOWN_SECONDS = 10  # an idle container is billed until it scales down: not the default minute
LOCK_FILE = Path(__file__).resolve().parent.parent / "requirements.lock"


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def image_requirements(lock_file: Path = LOCK_FILE, distributions: tuple[str, ...] = IMAGE_DISTRIBUTIONS) -> list[str]:
    """The lock file's exact pins (`name==version`) of the container's distributions."""
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
    .uv_pip_install(*(image_requirements() if modal.is_local() else []))
    .add_local_python_source("bilancio_pipeline")
)
results_volume = modal.Volume.from_name(VOLUME_NAME, create_if_missing=True)
secrets = [modal.Secret.from_name(name) for name in SECRET_NAMES]

app = modal.App(APP_NAME, image=image, secrets=secrets)


def _commit_volume() -> None:
    if not modal.is_local():  # in-process runs write to a plain folder
        results_volume.commit()


def _runner():
    """This container's runner: R2 if the attached secret names a bucket, else the volume."""
    return Runner(results_root(), VOLUME_NAME, r2_from_env())


@app.function(volumes={RESULTS_MOUNT: results_volume}, timeout=7200, cpu=CPU_CORES, memory=MEMORY_MIB,
              max_containers=MAX_CONTAINERS)
def run_simulation(task: dict[str, Any]) -> dict[str, Any]:
    """Run one simulation; its artifacts go to R2 under {job_id}/runs/{run_id}/ when the
    container has BILANCIO_R2_* (the `bilancio-r2` secret), else to the volume there.

    task: {run_id, job_id, params: RunParams.to_dict()}. Returns {run_id, job_id, ok, summary,
    day_metrics, artifacts: {name: s3://… or modal://… URL}, artifacts_error, wall_ms, version,
    volume, call_id}. A failing run raises RunFailed naming the run.
    """
    call_id = modal.current_function_call_id()
    runner = _runner()
    try:
        (done,) = runner.run_chunk([task], _commit_volume)["results"]  # a chunk of one
    finally:
        runner.close()
    if not done["ok"]:
        raise RunFailed(done["run_id"], done["error"], call_id)
    return {**done, "version": bilancio_pipeline.__version__, "volume": VOLUME_NAME, "call_id": call_id}


@app.function(volumes={RESULTS_MOUNT: results_volume}, timeout=3600, cpu=CPU_CORES, memory=MEMORY_MIB,
              max_containers=MAX_CONTAINERS, scaledown_window=SCALEDOWN_SECONDS)
def run_simulations(tasks: list[dict[str, Any]]) -> dict[str, Any]:
    """Run a chunk of simulations (one Modal input holds many runs, so it lasts seconds, not
    milliseconds), each on its own: a run that raises fails alone. Returns {results: one
    `run_simulation`-like result per task with `ok` and `error`, usage: {wall_seconds,
    cpu_seconds, peak_memory_mib}, version, call_id}. The volume is committed once per chunk."""
    call_id = modal.current_function_call_id()
    runner = _runner()
    try:
        chunk = runner.run_chunk(list(tasks), _commit_volume)
    finally:
        runner.close()
    for result in chunk["results"]:
        result["call_id"] = call_id
    return {**chunk, "version": bilancio_pipeline.__version__, "call_id": call_id}


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
        "artifacts": describe(r2_from_env(), VOLUME_NAME),  # where the runs' files go, no secrets
        "python": platform.python_version(),
    }
