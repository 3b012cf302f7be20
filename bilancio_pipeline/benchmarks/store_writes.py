"""How long the SQL store takes to write a sweep's worth of rows.

    python -m bilancio_pipeline.benchmarks.store_writes [--rows 10000] [--postgres-url URL]

Writes one job, ROWS runs and ROWS metrics rows (each an idempotent bulk upsert), then the
same metrics again (the update path), into a temporary SQLite file and into PostgreSQL: the
database at --postgres-url (its migrations applied; the benchmark's job is deleted afterwards),
or else a temporary server it starts itself if PostgreSQL is installed. Prints seconds per step.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from bilancio_pipeline.storage.sql import SqlStore

JOB_ID = "benchmark-store-writes"


def sweep_rows(n: int) -> tuple[dict, list[dict], list[dict]]:
    job = {
        "job_id": JOB_ID, "sweep_type": "balanced", "n_agents": 100, "maturity_days": 10,
        "kappas": [0.25, 0.5, 1.0, 2.0, 4.0], "concentrations": [0.2, 0.5, 1.0, 2.0, 5.0],
        "mus": [0.0, 0.25, 0.5, 0.75, 1.0], "outside_mid_ratios": [0.9], "seeds": list(range(n // 250 or 1)),
        "spec": {"benchmark": True}, "total_runs": n,
    }
    runs, metrics = [], []
    for i in range(n):
        run_id = f"{JOB_ID}-{i:06d}"
        runs.append({
            "run_id": run_id, "job_id": JOB_ID, "status": "completed", "regime": "active" if i % 2 else "passive",
            "n_agents": 100, "maturity_days": 10, "kappa": 0.25 * (1 + i % 5), "concentration": 0.2 * (1 + i % 7),
            "mu": 0.25 * (i % 5), "outside_mid_ratio": 0.9, "seed": i // 250, "cash_accounting": "conserving",
            "execution_time_ms": 1234.5, "artifact_base": f"{JOB_ID}/runs/{run_id}",
            "artifact_urls": {"events": f"file:///volume/{JOB_ID}/runs/{run_id}/events.jsonl"},
        })
        metrics.append({
            "run_id": run_id, "job_id": JOB_ID, "delta_total": (i % 97) / 97, "phi_total": 1 - (i % 97) / 97,
            "delta_clean": 0.1, "n_defaults": i % 11, "n_clears": 40, "n_clears_tracked": 40,
            "time_to_stability": 7, "last_sim_day": 12, "trading_effect": 0.01, "total_trades": 30,
            "total_trade_volume": 1500.0, "trade_volume_face": 1600.0, "cascade_fraction": 0.2,
            "total_loss": 50.0, "total_loss_pct": 0.05, "raw_metrics": {"max_G_t": 1.5, "alpha_1": 0.3},
        })
    return job, runs, metrics


def timed(label: str, action) -> float:
    start = time.perf_counter()
    action()
    seconds = time.perf_counter() - start
    print(f"  {label:<34} {seconds:6.3f} s", flush=True)
    return seconds


def bench(name: str, url: str, n: int) -> dict[str, float]:
    job, runs, metrics = sweep_rows(n)
    print(f"{name}:")
    with SqlStore(url) as store:
        store.ping()  # connect and create/check the schema outside the timings
        store.delete_job(JOB_ID)
        figures = {
            "job": timed("upsert 1 job", lambda: store.save_job(job)),
            "runs": timed(f"upsert {n} runs", lambda: store.upsert_runs(runs)),
            "metrics": timed(f"upsert {n} metrics", lambda: store.upsert_metrics(metrics)),
            "metrics_again": timed(f"upsert {n} metrics again (update)", lambda: store.upsert_metrics(metrics)),
            "query": timed(f"read {n} run_results rows", lambda: store.query_results(job_id=JOB_ID)),
        }
        assert len(store.query_results(job_id=JOB_ID, limit=n + 1)) == n
        store.delete_job(JOB_ID)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000, help="runs (and metrics rows) to write")
    parser.add_argument("--postgres-url", help="a PostgreSQL database with the migrations applied")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        bench("SQLite", f"sqlite:///{Path(tmp) / 'bench.db'}", args.rows)

    if args.postgres_url:
        bench("PostgreSQL", args.postgres_url, args.rows)
        return 0
    from bilancio_pipeline.benchmarks.pg_server import PostgresNotInstalled, PostgresServer

    try:
        server = PostgresServer()
    except PostgresNotInstalled as missing:
        print(f"PostgreSQL: skipped ({missing})", file=sys.stderr)
        return 0
    with server:
        server.create_database("bench")
        server.apply_migrations("bench")
        bench("PostgreSQL (temporary local server)", server.url("bench"), args.rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
