"""The Supabase IO manager, with Dagster's own contexts and by materializing partitioned assets,
on SQLite and on the real PostgreSQL."""

import dagster as dg
import pandas as pd
import pytest

from bilancio_pipeline.defs.io_managers import SupabaseIOManager
from bilancio_pipeline.defs.resources import StoreResource
from bilancio_pipeline.sweeps.lifecycle import register_sweep
from bilancio_pipeline.sweeps.spec import SweepSpec, expand, validate

runs_def = dg.DynamicPartitionsDefinition(name="runs")


@pytest.fixture(params=["sqlite", "postgres"])
def store_resource(request, tmp_path):
    if request.param == "sqlite":
        return StoreResource(home=str(tmp_path))
    return StoreResource(db_url=request.getfixturevalue("postgres_url"))


@pytest.fixture
def registered(store_resource):
    """A registered 4-run sweep, so metrics rows have their runs and job."""
    spec = validate(SweepSpec(kappas=(0.5, 1.0), seeds=(1,), job_id="io-test"))
    planned = expand(spec)
    store = store_resource.open()
    register_sweep(store, spec, planned)
    return [p.run_id for p in planned]


def _metrics(run_ids, delta):
    return [{"run_id": r, "job_id": "io-test", "delta_total": delta, "phi_total": 1 - delta, "n_defaults": 3}
            for r in run_ids]


def _context(store_resource, partition_key):
    return dg.build_output_context(
        asset_key=dg.AssetKey("run_metrics"), definition_metadata={"table": "metrics"},
        partition_key=partition_key, resources={"store": store_resource},
    )


def test_handle_output_upserts_rows_and_reports_metadata(store_resource, registered):
    manager = SupabaseIOManager(store=store_resource)
    with _context(store_resource, registered[0]) as context:
        manager.handle_output(context, _metrics(registered[:1], 0.4))
    with _context(store_resource, registered[0]) as context:
        manager.handle_output(context, pd.DataFrame(_metrics(registered[:1], 0.25)))  # replaces, not duplicates
        metadata = context.get_logged_metadata()
    rows = store_resource.open().get_metrics(registered)
    assert [(r["run_id"], r["delta_total"]) for r in rows] == [(registered[0], 0.25)]
    assert metadata["table"].value == "metrics" and metadata["dagster/row_count"].value == 1


def test_rows_outside_the_partitions_are_refused(store_resource, registered):
    manager = SupabaseIOManager(store=store_resource)
    with _context(store_resource, registered[0]) as context, pytest.raises(ValueError, match="not partitions"):
        manager.handle_output(context, _metrics(registered[:2], 0.5))
    assert store_resource.open().get_metrics(registered) == []


def test_unknown_columns_are_refused_before_writing(store_resource, registered):
    manager = SupabaseIOManager(store=store_resource)
    context = _context(store_resource, registered[0])
    with pytest.raises(ValueError, match="delta_totl"):
        manager.handle_output(context, [{"run_id": registered[0], "job_id": "io-test", "delta_totl": 0.1}])


def test_materialize_a_partition_range_and_load_it_back(store_resource, registered):
    @dg.asset(partitions_def=runs_def, io_manager_key="table_io", metadata={"table": "metrics"},
              backfill_policy=dg.BackfillPolicy.single_run())
    def toy_metrics(context: dg.AssetExecutionContext):
        return _metrics(context.partition_keys, 0.5)

    seen = {}

    @dg.asset(partitions_def=runs_def, io_manager_key="table_io")
    def toy_reader(context: dg.AssetExecutionContext, toy_metrics: pd.DataFrame):
        seen["frame"] = toy_metrics
        return None

    io = SupabaseIOManager(store=store_resource)
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("runs", registered)
        result = dg.materialize(
            [toy_metrics, toy_reader], instance=instance, resources={"table_io": io, "store": store_resource},
            tags={"dagster/asset_partition_range_start": registered[0],
                  "dagster/asset_partition_range_end": registered[2]},
        )
        assert result.success
        assert instance.get_materialized_partitions(dg.AssetKey("toy_metrics")) == set(registered[:3])
    frame = seen["frame"]
    assert sorted(frame["run_id"]) == sorted(registered[:3])  # exactly the range, nothing else
    assert list(frame["delta_total"]) == [0.5, 0.5, 0.5]
    assert "raw_metrics" in frame.columns
    stored = store_resource.open().get_metrics(registered)
    assert len(stored) == 3
