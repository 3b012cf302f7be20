"""The Dagster instance the UI, the daemon and the command line share, and the one place that
decides its settings (dagster.yaml and the DAGSTER_* environment) for all of them.

DAGSTER_HOME, if set, wins. Otherwise it is `<BILANCIO_HOME>/dagster`, created on first use with
a dagster.yaml sized for a small machine: sweep batches run one per core (a tag limit, so a
launch or a job_metrics run never waits behind batches), the queue is checked every second and
its runs are launched in parallel threads, sensors evaluate and submit runs in threads so a
sweep's batches are requested promptly, and a run that dies is retried by Dagster's run retries
(batches are idempotent; each job says how many times, see jobs.py). Its storage is Dagster's
SQLite storage with a faster event log for batches (event_log_storage.py);
BILANCIO_DAGSTER_PG_URL puts the instance's own storage on PostgreSQL.

A dagster.yaml written by an earlier version of this project is upgraded in place (its storage
settings kept); one the user wrote is left alone, and `warnings_for` says what it lacks.
"""

import logging
import os
from pathlib import Path

import yaml
from filelock import FileLock

from bilancio_pipeline.storage.config import bilancio_home
from bilancio_pipeline.sweeps.orchestrator import batch_slots

log = logging.getLogger(__name__)

BATCH_POOL_TAG = "bilancio/pool"  # sweep batches carry {BATCH_POOL_TAG: BATCH_POOL}; their run limit
BATCH_POOL = "sweep_batches"
CONFIG_VERSION = 3
_HEADER = f"# bilancio-pipeline instance settings, version {CONFIG_VERSION}. Remove this line to keep your own edits.\n"
_STORAGE_KEYS = ("storage", "run_storage", "event_log_storage", "schedule_storage")


# Dagster settings that live in the environment, not dagster.yaml, read by the daemon and the run
# workers. With them a batch's planned materializations are one event per asset instead of one
# per partition (on SQLite each event is a transaction: 1,000 runs cost minutes of bookkeeping),
# and a Postgres instance stores a batch's materializations in one insert. The cost: partitions
# of a batch whose Dagster run died show as missing rather than failed (the `runs` table still
# says failed, with the error).
DAGSTER_ENV = {
    "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "true",
    "DAGSTER_EVENT_BATCH_SIZE": "1000",
}


def apply_dagster_env() -> None:
    """Set the DAGSTER_* settings (a user's own values win); every process that opens the
    instance through `ensure_dagster_home` gets them: the UI, its daemon and run workers, the CLI."""
    for name, value in DAGSTER_ENV.items():
        os.environ.setdefault(name, value)


def instance_config(home: Path) -> dict:
    """dagster.yaml's content for an instance living in the folder `home`."""
    slots = batch_slots()
    # Two slots beyond the batches' own: a launch or a job_metrics run starts at once even when
    # every batch slot is taken; runs of UI backfills share the batches' limit.
    max_runs = slots + 2
    config = {
        "concurrency": {"runs": {"max_concurrent_runs": max_runs, "tag_concurrency_limits": [
            {"key": BATCH_POOL_TAG, "value": BATCH_POOL, "limit": slots},
            {"key": "dagster/backfill", "limit": slots},
        ]}},
        "run_coordinator": {
            "module": "dagster._core.run_coordinator",
            "class": "QueuedRunCoordinator",
            # Starting a run blocks until its process has imported the code (seconds): in threads,
            # the runs that may start together do so in parallel instead of one after another.
            "config": {"dequeue_interval_seconds": 1, "dequeue_use_threads": True, "dequeue_num_workers": max_runs},
        },
        # A big sweep's batches are requested in one sensor tick; creating each run writes its
        # planned-materialization events, so they are submitted in parallel threads.
        "sensors": {"use_threads": True, "num_workers": 4, "num_submit_workers": 4},
        "schedules": {"use_threads": True, "num_workers": 2},
        # A run whose worker never reports started is failed after start_timeout_seconds; a
        # started run whose worker died is found by the project's own check (defs/dead_runs.py):
        # the default run launcher cannot tell Dagster's run monitoring about it.
        "run_monitoring": {"enabled": True, "poll_interval_seconds": 5, "start_timeout_seconds": 90},
        # Which runs are retried, and how often, is set per job by the `dagster/max_retries` tag.
        "run_retries": {"enabled": True, "max_retries": 0},
        # A run's console shows INFO and above (its event log keeps every event): not a DEBUG
        # line per partition and asset.
        "python_logs": {"python_log_level": "INFO"},
        "telemetry": {"enabled": False},
        "nux": {"enabled": False},
    }
    if os.environ.get("BILANCIO_DAGSTER_PG_URL"):
        config["storage"] = {"postgres": {"postgres_url": {"env": "BILANCIO_DAGSTER_PG_URL"}}}
    else:
        config.update(sqlite_storage_config(home))
    return config


def sqlite_storage_config(home: Path) -> dict:
    """Dagster's default SQLite storage, in its default folders, except that the event log
    writes a batch of materializations in one transaction (see event_log_storage.py)."""
    def storage(module: str, cls: str, base_dir: Path) -> dict:
        return {"module": module, "class": cls, "config": {"base_dir": str(base_dir)}}

    home = Path(home).resolve()
    return {
        "run_storage": storage("dagster._core.storage.runs", "SqliteRunStorage", home / "history"),
        "event_log_storage": storage("bilancio_pipeline.defs.event_log_storage", "BatchingSqliteEventLogStorage",
                                     home / "history" / "runs"),
        "schedule_storage": storage("dagster._core.storage.schedules", "SqliteScheduleStorage", home / "schedules"),
    }


def ensure_dagster_home() -> Path:
    """Point DAGSTER_HOME at a folder with our dagster.yaml (kept if the user wrote their own,
    upgraded in place if an earlier version of this project wrote it) and apply DAGSTER_ENV."""
    home = Path(os.environ.get("DAGSTER_HOME") or bilancio_home() / "dagster").resolve()
    home.mkdir(parents=True, exist_ok=True)
    config_file = home / "dagster.yaml"
    with _first_use_lock(home):
        if not config_file.exists():
            _write(config_file, instance_config(home))
        else:
            _upgrade_if_ours(config_file, home)
    os.environ["DAGSTER_HOME"] = str(home)
    apply_dagster_env()
    return home


def _write(config_file: Path, config: dict) -> None:
    tmp = config_file.with_name(config_file.name + ".tmp")
    tmp.write_text(_HEADER + yaml.safe_dump(config, sort_keys=False))
    tmp.replace(config_file)


def _written_by_us(text: str, config: dict) -> int | None:
    """The version of our settings a dagster.yaml holds, or None if a person wrote it."""
    first = text.split("\n", 1)[0]
    if first.startswith(_HEADER.split(",")[0]):
        try:
            return int(first.split("version", 1)[1].split(".")[0])
        except (IndexError, ValueError):
            return None
    # Version 1 had no header; it is recognised by settings only it wrote together.
    coordinator = (config.get("run_coordinator") or {}).get("config") or {}
    v1_keys = {"concurrency", "run_coordinator", "sensors", "schedules", "run_monitoring", "telemetry", "nux",
               *_STORAGE_KEYS}
    if (set(config) <= v1_keys and coordinator.get("dequeue_use_threads") is True
            and (config.get("sensors") or {}).get("num_submit_workers") == 4 and "run_retries" not in config):
        return 1
    return None


def _upgrade_if_ours(config_file: Path, home: Path) -> None:
    text = config_file.read_text()
    try:
        current = yaml.safe_load(text) or {}
    except yaml.YAMLError:
        return  # not ours to repair: Dagster will name the error
    version = _written_by_us(text, current) if isinstance(current, dict) else None
    if version is None or version >= CONFIG_VERSION:
        return
    upgraded = instance_config(home)
    for key in _STORAGE_KEYS:  # the instance's history stays where it is
        upgraded.pop(key, None)
        if key in current:
            upgraded[key] = current[key]
    _write(config_file, upgraded)
    log.warning("upgraded %s to the settings of this version (run retries, batch slots)", config_file)


def warnings_for(instance) -> list[str]:
    """What a user-written dagster.yaml lacks for sweeps to recover from crashes by themselves."""
    problems = []
    if not instance.run_retries_enabled:
        problems.append("run retries are off, so a batch whose worker died is not retried "
                        "(add `run_retries: {enabled: true}` to dagster.yaml)")
    queue = instance.get_concurrency_config().run_queue_config
    tags = {(lim.get("key"), lim.get("value")) for lim in (queue.tag_concurrency_limits or [])} if queue else set()
    if (BATCH_POOL_TAG, BATCH_POOL) not in tags:
        problems.append(f"no run limit for the tag {BATCH_POOL_TAG}={BATCH_POOL}, so launches can wait behind batches")
    return problems


def get_instance():
    from dagster import DagsterInstance

    home = ensure_dagster_home()
    # Dagster's SQLite run storage creates its tables without guarding against another process
    # doing the same: two commands opening a fresh instance at once could fail with "table runs
    # already exists". Opening under the lock makes the second wait for the first.
    with _first_use_lock(home):
        return DagsterInstance.get()


def _first_use_lock(home: Path) -> FileLock:
    return FileLock(home / ".bilancio-init.lock", timeout=120)
