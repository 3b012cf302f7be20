"""The instance's settings come from one place, for the UI and the CLI alike; a dagster.yaml an
earlier version wrote is upgraded in place, one a person wrote is left alone and its gaps named;
dead runs are found from the pid Dagster records and ended through the instance."""

import os
import subprocess
import sys

import dagster as dg
import yaml

from bilancio_pipeline.defs import dead_runs
from bilancio_pipeline.defs.instance import DAGSTER_ENV, ensure_dagster_home, instance_config, warnings_for

# What the previous version wrote (no header, no run retries, one limit for all runs).
V1 = {
    "concurrency": {"runs": {"max_concurrent_runs": 2}},
    "run_coordinator": {"module": "dagster._core.run_coordinator", "class": "QueuedRunCoordinator",
                        "config": {"dequeue_interval_seconds": 1, "dequeue_use_threads": True, "dequeue_num_workers": 2}},
    "sensors": {"use_threads": True, "num_workers": 4, "num_submit_workers": 4},
    "schedules": {"use_threads": True, "num_workers": 2},
    "run_monitoring": {"enabled": True, "poll_interval_seconds": 10},
    "telemetry": {"enabled": False}, "nux": {"enabled": False},
    "storage": {"postgres": {"postgres_url": {"env": "SOME_PG_URL"}}},
}


def _home(tmp_path, monkeypatch, text: str | None = None):
    home = tmp_path / "dagster"
    home.mkdir()
    if text is not None:
        (home / "dagster.yaml").write_text(text)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    for name in DAGSTER_ENV:  # unset now, and unset again after the test whatever it sets
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    return home


def test_an_earlier_dagster_yaml_of_ours_is_upgraded_keeping_its_storage(tmp_path, monkeypatch):
    home = _home(tmp_path, monkeypatch, yaml.safe_dump(V1))
    ensure_dagster_home()
    text = (home / "dagster.yaml").read_text()
    config = yaml.safe_load(text)
    assert text.startswith("# bilancio-pipeline instance settings, version")
    assert config["run_retries"]["enabled"] is True
    assert {"key": "bilancio/pool", "value": "sweep_batches"}.items() <= config["concurrency"]["runs"][
        "tag_concurrency_limits"][0].items()
    assert config["storage"] == V1["storage"] and "run_storage" not in config  # the history stays where it is
    ensure_dagster_home()
    assert (home / "dagster.yaml").read_text() == text  # once upgraded, left as is


def test_a_dagster_yaml_a_person_wrote_is_left_alone_and_its_gaps_named(tmp_path, monkeypatch):
    mine = "telemetry:\n  enabled: false\n"
    home = _home(tmp_path, monkeypatch, mine)
    ensure_dagster_home()
    assert (home / "dagster.yaml").read_text() == mine
    with dg.DagsterInstance.get() as instance:
        problems = warnings_for(instance)
    assert any("run_retries" in p for p in problems) and any("bilancio/pool" in p for p in problems)


def test_the_cli_gets_the_same_dagster_settings_as_the_ui(tmp_path, monkeypatch):
    home = _home(tmp_path, monkeypatch)
    ensure_dagster_home()  # what `ui` and `sweep` both call before opening the instance
    assert {k: os.environ[k] for k in DAGSTER_ENV} == DAGSTER_ENV
    assert yaml.safe_load((home / "dagster.yaml").read_text().split("\n", 1)[1]) == instance_config(home)
    with dg.DagsterInstance.get() as instance:
        assert warnings_for(instance) == []


def test_a_run_whose_process_died_is_found_and_reported_failed(tmp_path, monkeypatch):
    _home(tmp_path, monkeypatch)
    ensure_dagster_home()

    @dg.op
    def noop():
        return 1

    @dg.job
    def tiny():
        noop()

    with dg.DagsterInstance.get() as instance:
        alive = tiny.execute_in_process(instance=instance)  # finished: never judged
        # A run left STARTED by a process that is gone, as a kill -9 leaves it.
        gone = subprocess.Popen([sys.executable, "-c", "pass"])
        gone.wait()
        run = instance.create_run_for_job(tiny)
        from dagster._core.events import DagsterEvent, DagsterEventType

        instance.report_dagster_event(
            DagsterEvent(DagsterEventType.RUN_START.value, job_name="tiny", pid=gone.pid), run_id=run.run_id)
        assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.STARTED
        assert [d.run.run_id for d in dead_runs.find_dead_runs(instance)] == [run.run_id]
        assert dead_runs.end_dead_runs(instance) == [run.run_id]
        ended = instance.get_run_by_id(run.run_id)
        assert ended.status == dg.DagsterRunStatus.FAILURE and dead_runs.reported_dead(ended)
        assert instance.get_run_by_id(alive.run_id).status == dg.DagsterRunStatus.SUCCESS
        assert dead_runs.end_dead_runs(instance) == []  # nothing left to end
