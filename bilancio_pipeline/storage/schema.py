"""The tables every backend keeps, as SQLAlchemy Core metadata.

`supabase/migrations/` is the schema of record for every backend (SQLite gets the same
migrations in its dialect, see `storage.migrations`); this module is the same schema as the code
sees it, and tests prove they agree column for column on PostgreSQL and on SQLite. A column added
by a migration goes last in its table here, where ALTER TABLE … ADD COLUMN puts it.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    Table,
    Text,
    false,
)
from sqlalchemy.dialects import postgresql

JOB_STATUSES = ("pending", "running", "completed", "failed", "cancelled")
RUN_STATUSES = ("pending", "running", "completed", "failed", "cancelled")
EVENT_TYPES = ("created", "started", "progress", "completed", "failed", "cancelled", "cleanup")

metadata = MetaData()

# Lists are float8[]/int[] in Postgres (as the original design had them) and JSON in SQLite.
FloatList = JSON().with_variant(postgresql.ARRAY(Float), "postgresql")
IntList = JSON().with_variant(postgresql.ARRAY(BigInteger), "postgresql")
# none_as_null: Python None is SQL NULL (what `is null` filters expect), not the JSON value null.
Json = JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")
Timestamp = DateTime(timezone=True)


def _status_check(column: str, values: tuple[str, ...], name: str) -> CheckConstraint:
    quoted = ", ".join(f"'{v}'" for v in values)
    return CheckConstraint(f"{column} in ({quoted})", name=name)


jobs = Table(
    "jobs",
    metadata,
    Column("job_id", Text, primary_key=True),
    Column("status", Text, nullable=False, server_default="pending"),
    Column("sweep_type", Text, nullable=False),
    Column("description", Text),
    Column("n_agents", Integer, nullable=False),
    Column("maturity_days", Integer, nullable=False),
    Column("kappas", FloatList, nullable=False),
    Column("concentrations", FloatList, nullable=False),
    Column("mus", FloatList, nullable=False),
    Column("outside_mid_ratios", FloatList, nullable=False),
    Column("seeds", IntList, nullable=False),
    Column("cash_accounting", Text, nullable=False, server_default="conserving"),
    Column("executor", Text, nullable=False, server_default="local"),
    Column("cloud", Boolean, nullable=False, server_default=false()),  # "false" would be a string in SQLite
    Column("spec", Json, nullable=False),  # the full sweep spec, enough to reproduce the sweep
    Column("provenance", Json),
    Column("total_runs", Integer, nullable=False, server_default="0"),
    Column("completed_runs", Integer, nullable=False, server_default="0"),
    Column("failed_runs", Integer, nullable=False, server_default="0"),
    Column("error", Text),
    Column("notes", Text),
    Column("created_at", Timestamp, nullable=False),
    Column("started_at", Timestamp),
    Column("completed_at", Timestamp),
    Column("updated_at", Timestamp, nullable=False),
    Column("artifact_policy", Text, nullable=False, server_default="all"),  # all, summary or none
    _status_check("status", JOB_STATUSES, "jobs_status_check"),
)

runs = Table(
    "runs",
    metadata,
    Column("run_id", Text, primary_key=True),
    Column("job_id", Text, ForeignKey("jobs.job_id", ondelete="CASCADE"), nullable=False, index=True),
    Column("status", Text, nullable=False, server_default="pending"),
    Column("regime", Text, nullable=False),
    Column("n_agents", Integer, nullable=False),
    Column("maturity_days", Integer, nullable=False),
    Column("kappa", Float, nullable=False),
    Column("concentration", Float, nullable=False),
    Column("mu", Float, nullable=False),
    Column("outside_mid_ratio", Float, nullable=False),
    Column("seed", BigInteger, nullable=False),
    Column("cash_accounting", Text, nullable=False),
    Column("execution_time_ms", Float),
    Column("modal_call_id", Text),
    Column("error", Text),
    Column("artifact_base", Text),  # where the run's artifacts live: {job_id}/runs/{run_id}
    Column("artifact_urls", Json),  # artifact name -> URL (s3://… or file://…)
    Column("created_at", Timestamp, nullable=False),
    Column("started_at", Timestamp),
    Column("completed_at", Timestamp),
    Column("updated_at", Timestamp, nullable=False),
    _status_check("status", RUN_STATUSES, "runs_status_check"),
    CheckConstraint("regime in ('passive', 'active')", name="runs_regime_check"),
)

metrics = Table(
    "metrics",
    metadata,
    # One row per run: the primary key is the unique key upserts target.
    Column("run_id", Text, ForeignKey("runs.run_id", ondelete="CASCADE"), primary_key=True),
    Column("job_id", Text, ForeignKey("jobs.job_id", ondelete="CASCADE"), nullable=False, index=True),
    Column("delta_total", Float),
    Column("phi_total", Float),
    Column("delta_clean", Float),
    Column("n_defaults", Integer),
    Column("n_clears", Integer),
    Column("n_clears_tracked", Integer),
    Column("time_to_stability", Integer),
    Column("last_sim_day", Integer),
    Column("trading_effect", Float),
    Column("total_trades", Integer),
    Column("total_trade_volume", Float),
    Column("trade_volume_face", Float),
    Column("cascade_fraction", Float),
    Column("total_loss", Float),
    Column("total_loss_pct", Float),
    Column("raw_metrics", Json),
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
)

job_events = Table(
    "job_events",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("job_id", Text, ForeignKey("jobs.job_id", ondelete="CASCADE"), nullable=False, index=True),
    Column("event_type", Text, nullable=False),
    Column("timestamp", Timestamp, nullable=False),
    Column("details", Json),
    _status_check("event_type", EVENT_TYPES, "job_events_event_type_check"),
)

job_metrics = Table(
    "job_metrics",
    metadata,
    Column("job_id", Text, ForeignKey("jobs.job_id", ondelete="CASCADE"), primary_key=True),
    Column("n_comparisons", Integer, nullable=False),
    Column("n_pairs", Integer, nullable=False),
    Column("mean_trading_effect", Float),
    Column("min_trading_effect", Float),
    Column("max_trading_effect", Float),
    Column("std_trading_effect", Float),
    Column("positive_effects", Integer),
    Column("negative_effects", Integer),
    Column("neutral_effects", Integer),
    Column("mean_delta_passive", Float),
    Column("mean_delta_active", Float),
    Column("mean_phi_passive", Float),
    Column("mean_phi_active", Float),
    Column("mean_trading_effect_clean", Float),
    Column("raw_summary", Json),
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
    # added by a later migration: the 95% t interval of mean_trading_effect over the pairs
    Column("trading_effect_ci_low", Float),
    Column("trading_effect_ci_high", Float),
)

TABLES = {t.name: t for t in (jobs, runs, metrics, job_events, job_metrics)}
# The key each table's upserts conflict on.
CONFLICT_KEYS = {"jobs": ("job_id",), "runs": ("run_id",), "metrics": ("run_id",), "job_metrics": ("job_id",)}

# The view `run_results` (runs joined with their metrics) that queries read; created by the
# migrations (on SQLite, by their SQLite text in storage.migrations_sqlite).
RUN_RESULTS_COLUMNS = (
    "run_id", "job_id", "status", "regime", "n_agents", "maturity_days", "kappa", "concentration",
    "mu", "outside_mid_ratio", "seed", "cash_accounting", "execution_time_ms", "error",
    "delta_total", "phi_total", "delta_clean", "n_defaults", "n_clears", "n_clears_tracked",
    "time_to_stability", "last_sim_day", "trading_effect", "total_trades", "total_trade_volume",
    "trade_volume_face", "cascade_fraction", "total_loss", "total_loss_pct",
)
