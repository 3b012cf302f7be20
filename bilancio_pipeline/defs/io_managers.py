"""The Supabase IO manager: asset outputs become rows of their table, in whichever backend the
`store` resource names (SQLite, Postgres/Supabase by connection string, or Supabase REST).

An asset declares its table with `metadata={"table": "metrics"}`. An output is a DataFrame or a
list of row dicts, one row per partition key, keyed by the table's key column. All the rows of
a partition range go out in one bulk upsert, so re-materializing a partition replaces its row
and writing twice changes nothing. Loading an input reads exactly the rows of the partitions
asked for, as a DataFrame.
"""

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

import dagster as dg

from bilancio_pipeline.defs.partitions import job_id_of
from bilancio_pipeline.defs.resources import StoreResource
from bilancio_pipeline.storage.base import Row, Store, write_rows
from bilancio_pipeline.storage.schema import CONFLICT_KEYS, TABLES

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["SupabaseIOManager", "read_rows", "to_rows", "write_rows"]  # write_rows: storage.base's, used by assets


def to_rows(obj: "pd.DataFrame | Sequence[Row] | Row") -> list[Row]:
    if isinstance(obj, dict):  # one row, e.g. a sweep's job_metrics
        return [dict(obj)]
    pandas = sys.modules.get("pandas")  # not imported: obj cannot be a DataFrame (and a run starts faster)
    if pandas is not None and isinstance(obj, pandas.DataFrame):
        frame = obj.astype(object).where(obj.notna(), None)
        return frame.to_dict(orient="records")
    return [dict(r) for r in obj]


def read_rows(store: Store, table: str, keys: Sequence[str]) -> list[Row]:
    """The rows of these partition keys (run ids for runs/metrics, job ids for job_metrics)."""
    if table == "metrics":
        return store.get_metrics(keys)
    if table == "runs":
        by_job: dict[str, list[str]] = {}
        for key in keys:
            by_job.setdefault(job_id_of(key), []).append(key)
        return [row for job, ids in by_job.items() for row in store.list_runs(job, run_ids=ids)]
    if table == "job_metrics":
        return [row for key in keys if (row := store.get_job_metrics(key)) is not None]
    raise ValueError(f"the IO manager cannot read table {table!r}")


def _table(metadata: dict | None, asset_key: dg.AssetKey) -> str:
    table = (metadata or {}).get("table") or asset_key.path[-1]
    if table not in TABLES:
        raise ValueError(f"asset {asset_key.to_user_string()} names table {table!r}, which is not one of {sorted(TABLES)}")
    return table


class SupabaseIOManager(dg.ConfigurableIOManager):
    store: dg.ResourceDependency[StoreResource]

    def handle_output(self, context: dg.OutputContext, obj) -> None:
        if obj is None:
            return
        table = _table(context.definition_metadata, context.asset_key)
        rows = to_rows(obj)
        if context.has_asset_partitions:
            key = CONFLICT_KEYS[table][0]
            expected = set(context.asset_partition_keys)
            stray = {str(r.get(key)) for r in rows} - expected
            if stray:
                raise ValueError(f"{table} rows {sorted(stray)[:5]} are not partitions of this output")
        store = self.store.open()
        try:
            write_rows(store, table, rows)
        finally:
            store.close()
        context.add_output_metadata({
            "table": table,
            "backend": store.backend,
            "dagster/row_count": len(rows),
        })

    def load_input(self, context: dg.InputContext) -> "pd.DataFrame":
        upstream = context.upstream_output
        table = _table(upstream.definition_metadata if upstream else None, context.asset_key)
        keys = list(context.asset_partition_keys) if context.has_asset_partitions else []
        if not keys:
            raise ValueError(f"loading {table} needs the partitions to read; this input has none")
        store = self.store.open()
        try:
            rows = read_rows(store, table, keys)
        finally:
            store.close()
        import pandas as pd

        return pd.DataFrame(rows, columns=list(TABLES[table].columns.keys()))
