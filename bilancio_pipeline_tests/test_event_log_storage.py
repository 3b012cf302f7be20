"""The batching SQLite event log stores exactly what Dagster's own SQLite event log stores.

The same events go into a plain `SqliteEventLogStorage` (one by one, as Dagster stores a batch)
and into ours (one transaction per shard); every query the UI and the sensors make must give the
same answer from both.
"""

import time
import uuid

import dagster as dg
import pytest
from dagster._core.events import DagsterEvent, DagsterEventType, EngineEventData, StepMaterializationData
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log import SqliteEventLogStorage

from bilancio_pipeline.defs.event_log_storage import BatchingSqliteEventLogStorage
from bilancio_pipeline.defs.instance import ensure_dagster_home


def _materialization(run_id: str, asset: str, partition: str, rows: int) -> EventLogEntry:
    materialization = dg.AssetMaterialization(
        asset_key=dg.AssetKey(asset), partition=partition, metadata={"rows": rows}, tags={"dagster/data_version": str(rows)}
    )
    event = DagsterEvent(
        event_type_value=DagsterEventType.ASSET_MATERIALIZATION.value, job_name="sweep_batch_job",
        step_key="simulate_runs", event_specific_data=StepMaterializationData(materialization),
    )
    return EventLogEntry(error_info=None, level=20, user_message="", run_id=run_id, timestamp=time.time(),
                         step_key="simulate_runs", job_name="sweep_batch_job", dagster_event=event)


def _engine_event(run_id: str) -> EventLogEntry:
    event = DagsterEvent(event_type_value=DagsterEventType.ENGINE_EVENT.value, job_name="sweep_batch_job", message="hello",
                         event_specific_data=EngineEventData())
    return EventLogEntry(error_info=None, level=20, user_message="hello", run_id=run_id, timestamp=time.time(),
                         job_name="sweep_batch_job", dagster_event=event)


@pytest.fixture
def storages(tmp_path):
    plain = SqliteEventLogStorage(str(tmp_path / "plain"))
    batching = BatchingSqliteEventLogStorage(str(tmp_path / "batching"))
    yield plain, batching
    plain.dispose()
    batching.dispose()


def _answers(storage, run_ids, assets):
    keys = [dg.AssetKey(a) for a in assets]
    records = {run_id: [r.event_log_entry for r in storage.get_records_for_run(run_id).records] for run_id in run_ids}
    latest = storage.get_latest_materialization_events(keys)
    return {
        "events": {run_id: [(e.dagster_event_type, e.dagster_event.partition if e.dagster_event else None)
                            for e in events] for run_id, events in records.items()},
        "partitions": {a: storage.get_materialized_partitions(dg.AssetKey(a)) for a in assets},
        "latest": {k: (e.run_id, e.dagster_event.partition) for k, e in latest.items() if e},
        "asset_records": {r.asset_entry.asset_key: (r.asset_entry.last_materialization.dagster_event.partition,
                                                     r.asset_entry.last_run_id)
                          for r in storage.get_asset_records(keys)},
        "records_by_asset": {a: sorted(r.event_log_entry.dagster_event.partition for r in storage.fetch_materializations(
            dg.AssetKey(a), limit=10_000).records) for a in assets},
        "tags": {a: storage.get_event_tags_for_asset(dg.AssetKey(a)) for a in assets},
        "asset_keys": sorted(storage.all_asset_keys()),
    }


def test_a_batch_is_stored_as_dagster_stores_it_event_by_event(storages):
    plain, batching = storages
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    batches = [
        [_materialization(first, "sweep_runs", f"run-{i:03d}", i) for i in range(40)],
        [_materialization(first, "run_metrics", f"run-{i:03d}", i) for i in range(40)],
        [_materialization(second, "sweep_runs", f"run-{i:03d}", i) for i in range(40, 45)],  # a later run
        [_engine_event(second), _materialization(second, "run_metrics", "run-040", 40)],  # mixed: Dagster's path
    ]
    for batch in batches:
        for event in batch:
            plain.store_event(event)
        batching.store_event_batch(batch)

    expected = _answers(plain, [first, second], ["sweep_runs", "run_metrics"])
    assert _answers(batching, [first, second], ["sweep_runs", "run_metrics"]) == expected
    # the comparison is not vacuous
    assert len(expected["partitions"]["sweep_runs"]) == 45
    assert expected["latest"][dg.AssetKey("sweep_runs")] == (second, "run-044")
    assert expected["tags"]["sweep_runs"]


def test_the_instance_bilancio_configures_uses_it(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    monkeypatch.delenv("BILANCIO_DAGSTER_PG_URL", raising=False)
    ensure_dagster_home()
    with dg.DagsterInstance.get() as instance:
        assert isinstance(instance.event_log_storage, BatchingSqliteEventLogStorage)
        # Dagster's usual folders, so `dagster` commands and the UI find the same history
        assert instance.event_log_storage._base_dir == str(tmp_path / "dagster" / "history" / "runs")
