"""One `runs` partition per simulation run and one `sweeps` partition per sweep (job).

Keys are added at launch, in grid order, so one sweep's runs are contiguous and a range of
them is one batch. The parameters of a run live in the `runs` table, not in its key.
"""

import dagster as dg

runs_partitions = dg.DynamicPartitionsDefinition(name="runs")
sweeps_partitions = dg.DynamicPartitionsDefinition(name="sweeps")


def job_id_of(run_key: str) -> str:
    """Run keys are `{job_id}_{regime}_{hash}` and job ids never contain `_`."""
    return run_key.split("_", 1)[0]
