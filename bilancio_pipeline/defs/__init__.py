"""Dagster definitions: partitions, resources, IO managers, assets, checks, sensors, jobs, schedules."""
