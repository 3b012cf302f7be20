"""The names the project's Dagster runs are found by: its job names and the tags it sets.

Kept apart from the job definitions so that the modules the jobs are built from (the assets, the
orchestration) can name the jobs without importing them."""

LAUNCH_JOB, BATCH_JOB, METRICS_JOB = "launch_sweep_job", "sweep_batch_job", "job_metrics_job"

JOB_ID_TAG = "bilancio/job_id"  # the sweep a run belongs to
LAUNCHED_BY_TAG = "bilancio/launched_by"  # "cli" when the command line drives the batches itself
# On a launch run (or a batch) that submitted its successors itself (defs/handoff.py), so the
# daemon's sensor does not request them again.
HANDED_ON_TAG = "bilancio/handed_on"
PARTITION_TAG = "dagster/partition"
RANGE_START_TAG, RANGE_END_TAG = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"


def range_tags(first: str, last: str) -> dict[str, str]:
    """The tags that make a run of a partitioned asset job cover the partitions first..last."""
    return {RANGE_START_TAG: first, RANGE_END_TAG: last}
