"""The Dagster instance the UI, the daemon and the command line share.

DAGSTER_HOME, if set, wins. Otherwise it is `<BILANCIO_HOME>/dagster`, created on first use with
a dagster.yaml sized for a small machine: runs queue and start two at a time (one per core),
the queue is checked every second and its runs are launched in parallel threads, and sensors
evaluate and submit runs in threads so a sweep's batches are requested promptly. Its storage is
Dagster's SQLite storage with a faster event log for batches (event_log_storage.py);
BILANCIO_DAGSTER_PG_URL puts the instance's own storage on PostgreSQL.
"""

import os
from pathlib import Path

import yaml
from filelock import FileLock

from bilancio_pipeline.storage.config import bilancio_home


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
    for name, value in DAGSTER_ENV.items():
        os.environ.setdefault(name, value)


def instance_config(home: Path) -> dict:
    """dagster.yaml's content for an instance living in the folder `home`."""
    cores = os.cpu_count() or 2
    max_runs = int(os.environ.get("BILANCIO_MAX_CONCURRENT_RUNS", cores))
    config = {
        "concurrency": {"runs": {"max_concurrent_runs": max_runs}},
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
        "run_monitoring": {"enabled": True, "poll_interval_seconds": 10},
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
    """Point DAGSTER_HOME at a folder with our dagster.yaml (kept if the user wrote their own)."""
    home = Path(os.environ.get("DAGSTER_HOME") or bilancio_home() / "dagster").resolve()
    home.mkdir(parents=True, exist_ok=True)
    config_file = home / "dagster.yaml"
    with _first_use_lock(home):
        if not config_file.exists():
            config_file.write_text(yaml.safe_dump(instance_config(home), sort_keys=False))
    os.environ["DAGSTER_HOME"] = str(home)
    return home


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
