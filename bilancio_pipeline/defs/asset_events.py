"""Log many partitions' materializations from inside a step as one batch of events.

A batch step materializes hundreds of `runs` partitions, each with its own metadata, and as its
runs finish rather than all at its end. Dagster's public ways fall short of that: a ranged
`Output` gives every partition the same metadata at the step's end (`add_asset_metadata(...,
partition_key=)` can vary it, but still only at the end), and `context.log_event` stores each
event on its own (on SQLite two transactions per event: ~20 ms per partition per asset). So the
events are built exactly as `context.log_event` builds them and handed to the instance with the
batch marker Dagster puts on a ranged output's materializations: with DAGSTER_EVENT_BATCH_SIZE
set (defs/instance.py) they reach the event log storage as one write
(defs/event_log_storage.py). Without it they are stored one by one, as log_event would.
"""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg
from dagster._core.events import DagsterEvent, DagsterEventBatchMetadata, generate_event_batch_id


def log_materializations(context: dg.AssetExecutionContext, materializations: Sequence[dg.AssetMaterialization]) -> None:
    step = context.op_execution_context._step_execution_context  # noqa: SLF001 (what log_event uses)
    batch_id, last = generate_event_batch_id(), len(materializations) - 1
    for i, materialization in enumerate(materializations):
        DagsterEvent.asset_materialization(step, materialization, DagsterEventBatchMetadata(batch_id, i == last))
