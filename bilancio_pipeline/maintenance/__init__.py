"""Housekeeping of the results volume: find and delete old experiments (Dagster job, schedule
and CLI share this code)."""

from bilancio_pipeline.maintenance.cleanup import CleanupReport, open_volume, plan_cleanup, run_cleanup, volume_kind

__all__ = ["CleanupReport", "open_volume", "plan_cleanup", "run_cleanup", "volume_kind"]
