"""The migrations of `supabase/migrations` in SQLite's dialect.

A migration's SQLite statements are, in this order of preference:
1. its own SQLite text in SQLITE_TEXT (for what SQLite cannot say the Postgres way: the
   initial tables, views, triggers, functions, constraints added to an existing table);
2. else each Postgres statement translated by `translate`, which knows the portable subset:
   `alter table public.t add column c <type> [not null] [default <constant>] [check (…)]`,
   `… drop column`, `… rename column`, `create index … on public.t (…)`, `drop index`;
   access control (grant, revoke, policies, row-level security, roles) and comments have no
   meaning in an embedded single-user file and translate to nothing.
Anything else stops the upgrade before it starts, naming the migration and the statement: give
that migration its SQLite text here.
"""

from __future__ import annotations

import re

from bilancio_pipeline.storage.base import StoreError

# Version -> SQLite script. The first is the schema 0.x's store created in SQLite (from
# storage/schema.py of that version), kept as it was so old and new files stay identical.
SQLITE_TEXT: dict[str, str] = {
    "20261123000000": """
CREATE TABLE jobs (
    job_id TEXT NOT NULL,
    status TEXT DEFAULT 'pending' NOT NULL,
    sweep_type TEXT NOT NULL,
    description TEXT,
    n_agents INTEGER NOT NULL,
    maturity_days INTEGER NOT NULL,
    kappas JSON NOT NULL,
    concentrations JSON NOT NULL,
    mus JSON NOT NULL,
    outside_mid_ratios JSON NOT NULL,
    seeds JSON NOT NULL,
    cash_accounting TEXT DEFAULT 'conserving' NOT NULL,
    executor TEXT DEFAULT 'local' NOT NULL,
    cloud BOOLEAN DEFAULT 0 NOT NULL,
    spec JSON NOT NULL,
    provenance JSON,
    total_runs INTEGER DEFAULT '0' NOT NULL,
    completed_runs INTEGER DEFAULT '0' NOT NULL,
    failed_runs INTEGER DEFAULT '0' NOT NULL,
    error TEXT,
    notes TEXT,
    created_at DATETIME NOT NULL,
    started_at DATETIME,
    completed_at DATETIME,
    updated_at DATETIME NOT NULL,
    PRIMARY KEY (job_id),
    CONSTRAINT jobs_status_check CHECK (status in ('pending', 'running', 'completed', 'failed', 'cancelled'))
);
CREATE TABLE job_events (
    id INTEGER NOT NULL,
    job_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    timestamp DATETIME NOT NULL,
    details JSON,
    PRIMARY KEY (id),
    CONSTRAINT job_events_event_type_check CHECK (event_type in ('created', 'started', 'progress', 'completed', 'failed', 'cancelled', 'cleanup')),
    FOREIGN KEY(job_id) REFERENCES jobs (job_id) ON DELETE CASCADE
);
CREATE INDEX ix_job_events_job_id ON job_events (job_id);
CREATE TABLE job_metrics (
    job_id TEXT NOT NULL,
    n_comparisons INTEGER NOT NULL,
    n_pairs INTEGER NOT NULL,
    mean_trading_effect FLOAT,
    min_trading_effect FLOAT,
    max_trading_effect FLOAT,
    std_trading_effect FLOAT,
    positive_effects INTEGER,
    negative_effects INTEGER,
    neutral_effects INTEGER,
    mean_delta_passive FLOAT,
    mean_delta_active FLOAT,
    mean_phi_passive FLOAT,
    mean_phi_active FLOAT,
    mean_trading_effect_clean FLOAT,
    raw_summary JSON,
    created_at DATETIME NOT NULL,
    updated_at DATETIME NOT NULL,
    PRIMARY KEY (job_id),
    FOREIGN KEY(job_id) REFERENCES jobs (job_id) ON DELETE CASCADE
);
CREATE TABLE runs (
    run_id TEXT NOT NULL,
    job_id TEXT NOT NULL,
    status TEXT DEFAULT 'pending' NOT NULL,
    regime TEXT NOT NULL,
    n_agents INTEGER NOT NULL,
    maturity_days INTEGER NOT NULL,
    kappa FLOAT NOT NULL,
    concentration FLOAT NOT NULL,
    mu FLOAT NOT NULL,
    outside_mid_ratio FLOAT NOT NULL,
    seed BIGINT NOT NULL,
    cash_accounting TEXT NOT NULL,
    execution_time_ms FLOAT,
    modal_call_id TEXT,
    error TEXT,
    artifact_base TEXT,
    artifact_urls JSON,
    created_at DATETIME NOT NULL,
    started_at DATETIME,
    completed_at DATETIME,
    updated_at DATETIME NOT NULL,
    PRIMARY KEY (run_id),
    CONSTRAINT runs_status_check CHECK (status in ('pending', 'running', 'completed', 'failed', 'cancelled')),
    CONSTRAINT runs_regime_check CHECK (regime in ('passive', 'active')),
    FOREIGN KEY(job_id) REFERENCES jobs (job_id) ON DELETE CASCADE
);
CREATE INDEX ix_runs_job_id ON runs (job_id);
CREATE TABLE metrics (
    run_id TEXT NOT NULL,
    job_id TEXT NOT NULL,
    delta_total FLOAT,
    phi_total FLOAT,
    delta_clean FLOAT,
    n_defaults INTEGER,
    n_clears INTEGER,
    n_clears_tracked INTEGER,
    time_to_stability INTEGER,
    last_sim_day INTEGER,
    trading_effect FLOAT,
    total_trades INTEGER,
    total_trade_volume FLOAT,
    trade_volume_face FLOAT,
    cascade_fraction FLOAT,
    total_loss FLOAT,
    total_loss_pct FLOAT,
    raw_metrics JSON,
    created_at DATETIME NOT NULL,
    updated_at DATETIME NOT NULL,
    PRIMARY KEY (run_id),
    FOREIGN KEY(run_id) REFERENCES runs (run_id) ON DELETE CASCADE,
    FOREIGN KEY(job_id) REFERENCES jobs (job_id) ON DELETE CASCADE
);
CREATE INDEX ix_metrics_job_id ON metrics (job_id);
CREATE INDEX runs_job_id_status_idx ON runs (job_id, status);
CREATE INDEX jobs_status_created_at_idx ON jobs (status, created_at);
CREATE INDEX jobs_created_at_idx ON jobs (created_at);
-- updated_at is set by the store on every write (there is no trigger in SQLite).
CREATE VIEW run_results AS SELECT runs.run_id, runs.job_id, runs.status, runs.regime, runs.n_agents,
    runs.maturity_days, runs.kappa, runs.concentration, runs.mu, runs.outside_mid_ratio, runs.seed,
    runs.cash_accounting, runs.execution_time_ms, runs.error, metrics.delta_total, metrics.phi_total,
    metrics.delta_clean, metrics.n_defaults, metrics.n_clears, metrics.n_clears_tracked,
    metrics.time_to_stability, metrics.last_sim_day, metrics.trading_effect, metrics.total_trades,
    metrics.total_trade_volume, metrics.trade_volume_face, metrics.cascade_fraction, metrics.total_loss,
    metrics.total_loss_pct
FROM runs LEFT OUTER JOIN metrics ON metrics.run_id = runs.run_id;
""",
    # Roles, grants and row-level security: nothing to do in a file only its owner opens.
    "20261123000100": "",
}

# Postgres type -> the name SQLAlchemy gives the same schema.py type in SQLite.
_TYPES = {
    "text": "TEXT", "integer": "INTEGER", "int": "INTEGER", "int4": "INTEGER", "bigint": "BIGINT", "int8": "BIGINT",
    "double precision": "FLOAT", "float8": "FLOAT", "boolean": "BOOLEAN", "bool": "BOOLEAN",
    "jsonb": "JSON", "json": "JSON", "timestamptz": "DATETIME", "timestamp with time zone": "DATETIME",
}
_TYPE = "|".join(sorted((re.escape(t) for t in _TYPES), key=len, reverse=True))
_ADD_COLUMN = re.compile(
    rf"alter table (?:only )?public\.(?P<table>\w+) add column (?P<column>\w+) (?P<type>{_TYPE})(?P<array>\[\])?"
    r"(?P<rest>(?: .*)?)$", re.IGNORECASE | re.DOTALL)
_PASS_THROUGH = re.compile(  # the same text works once `public.` is dropped
    r"(alter table (?:only )?public\.\w+ (drop|rename) column |create (unique )?index |drop index )",
    re.IGNORECASE)
_NOTHING_TO_DO = re.compile(
    r"(grant |revoke |(create|alter|drop) policy |(create|alter|drop) role |comment on "
    r"|alter table (?:only )?public\.\w+ (enable|disable|force|no force) row level security$)", re.IGNORECASE)


def sqlite_statements(migration) -> list[str]:
    """The statements that apply `migration` (a `migrations.Migration`) to a SQLite store."""
    if migration.version in SQLITE_TEXT:
        from bilancio_pipeline.storage.migrations import split_statements

        return split_statements(SQLITE_TEXT[migration.version])
    out = []
    for number, statement in enumerate(migration.statements(), 1):
        try:
            translated = translate(statement)
        except ValueError as problem:
            raise StoreError("sqlite", f"migration {migration.filename}, statement {number}: {problem}; give the "
                                       "migration its SQLite text in bilancio_pipeline/storage/migrations_sqlite.py") from None
        if translated:
            out.append(translated)
    return out


def translate(statement: str) -> str | None:
    """One Postgres statement in SQLite's dialect, or None if it means nothing there; raises
    ValueError when it is outside the portable subset."""
    flat = " ".join(statement.split())
    if _NOTHING_TO_DO.match(flat):
        return None
    if match := _ADD_COLUMN.match(flat):
        column_type = "JSON" if match["array"] else _TYPES[match["type"].lower()]
        rest = _constant_defaults(_unqualified(match["rest"]))
        return f"ALTER TABLE {match['table']} ADD COLUMN {match['column']} {column_type}{rest}"
    if _PASS_THROUGH.match(flat):
        if re.search(r"\busing\b|\bconcurrently\b|\bwhere\b", flat, re.IGNORECASE):
            raise ValueError(f"no SQLite form for {flat[:80]!r}")
        return _unqualified(flat)
    raise ValueError(f"no SQLite form for {flat[:80]!r}")


def _unqualified(text: str) -> str:
    return re.sub(r"\bpublic\.", "", text)


def _constant_defaults(rest: str) -> str:
    """SQLite can add a column only with a constant default; booleans are 1 and 0 there."""
    if re.search(r"\(\s*\)|::", rest):
        raise ValueError(f"a default or check that calls a function or casts has no SQLite form: {rest.strip()!r}")
    rest = re.sub(r"\bdefault true\b", "DEFAULT 1", rest, flags=re.IGNORECASE)
    return re.sub(r"\bdefault false\b", "DEFAULT 0", rest, flags=re.IGNORECASE)
