"""Everything Dagster loads, assembled; each piece lives in its own module under `defs/`."""

import dagster as dg

from bilancio_pipeline.defs import assets, jobs, maintenance, sensors
from bilancio_pipeline.defs.io_managers import SupabaseIOManager
from bilancio_pipeline.defs.resources import resources_from_env


def build_definitions(**overrides: dg.ConfigurableResource) -> dg.Definitions:
    """The project's definitions; resources come from the environment unless overridden by key."""
    resources = {**resources_from_env(), **overrides}
    core = dg.Definitions(
        assets=[assets.simulate_runs, assets.job_metrics, assets.sweep_report],
        jobs=[jobs.launch_sweep_job, jobs.sweep_batch_job, jobs.job_metrics_job],
        sensors=[sensors.sweep_batches_sensor, sensors.batch_success_sensor, sensors.batch_failure_sensor,
                 sensors.batch_canceled_sensor, sensors.sweep_completion_sensor, sensors.dead_run_sensor],
        resources={**resources, "table_io_manager": SupabaseIOManager(store=resources["store"])},
    )
    return dg.Definitions.merge(core, maintenance.defs)


defs = build_definitions()
