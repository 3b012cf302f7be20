"""SqlStore on SQLite and on a real PostgreSQL (migrations applied): every Store operation."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import create_engine, text

from bilancio_pipeline.storage import migrations, schema
from bilancio_pipeline.storage.base import NotFound, StoreError
from bilancio_pipeline.storage.sql import COPY_MIN_ROWS, SqlStore

UTC = dt.timezone.utc


def make_job(job_id: str = "brave-blue-fox", **overrides) -> dict:
    job = {
        "job_id": job_id,
        "sweep_type": "balanced",
        "description": "a test sweep",
        "n_agents": 5,
        "maturity_days": 3,
        "kappas": [0.5, 1, 2.25],  # an int among floats comes back as a float on both backends
        "concentrations": [1.0],
        "mus": [0.0, 0.5],
        "outside_mid_ratios": [0.9],
        "seeds": [42, 2**40],
        "spec": {"grid": {"kappas": [0.5, 1, 2.25]}, "name": "ünïcode ✓", "nested": [{"a": None}]},
        "provenance": {"git": "abc123", "dirty": False},
        "total_runs": 4,
    }
    job.update(overrides)
    return job


def make_run(run_id: str, job_id: str = "brave-blue-fox", **overrides) -> dict:
    run = {
        "run_id": run_id,
        "job_id": job_id,
        "regime": "passive",
        "n_agents": 5,
        "maturity_days": 3,
        "kappa": 0.5,
        "concentration": 1.0,
        "mu": 0.0,
        "outside_mid_ratio": 0.9,
        "seed": 42,
        "cash_accounting": "conserving",
    }
    run.update(overrides)
    return run


def make_metrics(run_id: str, job_id: str = "brave-blue-fox", **overrides) -> dict:
    row = {"run_id": run_id, "job_id": job_id, "delta_total": 0.25, "phi_total": 0.75, "n_defaults": 2,
           "raw_metrics": {"days": [1, 2, 3], "max_G": 1.5}}
    row.update(overrides)
    return row


def seeded(store, n_runs: int = 4, job_id: str = "brave-blue-fox"):
    store.save_job(make_job(job_id))
    store.upsert_runs([
        make_run(f"{job_id}-r{i}", job_id, regime="passive" if i % 2 == 0 else "active", kappa=0.5 * (i + 1), seed=i)
        for i in range(n_runs)
    ])
    return [f"{job_id}-r{i}" for i in range(n_runs)]


def scalar(store: SqlStore, sql: str):
    """One value straight from the database, bypassing the store."""
    engine = create_engine(store.url)
    try:
        with engine.connect() as conn:
            return conn.execute(text(sql)).scalar()
    finally:
        engine.dispose()


def assert_utc(value):
    assert isinstance(value, dt.datetime)
    assert value.utcoffset() == dt.timedelta(0), value


# --- jobs ---------------------------------------------------------------------------------


def test_save_and_get_job_round_trips_lists_json_and_defaults(sql_store):
    sql_store.save_job(make_job())
    job = sql_store.get_job("brave-blue-fox")
    assert job["kappas"] == [0.5, 1.0, 2.25] and all(type(k) is float for k in job["kappas"])
    assert job["seeds"] == [42, 2**40] and all(type(s) is int for s in job["seeds"])
    assert job["spec"] == {"grid": {"kappas": [0.5, 1, 2.25]}, "name": "ünïcode ✓", "nested": [{"a": None}]}
    assert job["provenance"] == {"git": "abc123", "dirty": False}
    # server defaults
    assert job["status"] == "pending"
    assert job["cloud"] is False
    assert job["executor"] == "local" and job["cash_accounting"] == "conserving"
    assert (job["completed_runs"], job["failed_runs"], job["total_runs"]) == (0, 0, 4)
    assert job["notes"] is None and job["started_at"] is None
    assert set(job) == set(schema.jobs.columns.keys())
    assert_utc(job["created_at"])
    assert_utc(job["updated_at"])
    assert abs(job["created_at"] - dt.datetime.now(UTC)) < dt.timedelta(minutes=1)


def test_get_unknown_job_raises_not_found(sql_store):
    with pytest.raises(NotFound) as info:
        sql_store.get_job("no-such-job")
    assert info.value.backend == sql_store.backend
    assert "no-such-job" in str(info.value)


def test_save_job_again_updates_in_place_and_keeps_created_at(sql_store):
    sql_store.save_job(make_job())
    first = sql_store.get_job("brave-blue-fox")
    sql_store.save_job(make_job(description="renamed", cloud=True, kappas=[3.0]))
    second = sql_store.get_job("brave-blue-fox")
    assert len(sql_store.list_jobs()) == 1
    assert second["description"] == "renamed" and second["cloud"] is True and second["kappas"] == [3.0]
    assert second["created_at"] == first["created_at"]
    assert second["updated_at"] >= first["updated_at"]


def test_partial_save_job_keeps_absent_columns(sql_store):
    sql_store.save_job(make_job(notes="keep me"))
    sql_store.save_job({"job_id": "brave-blue-fox", "status": "running"})
    job = sql_store.get_job("brave-blue-fox")
    assert job["status"] == "running" and job["notes"] == "keep me" and job["kappas"] == [0.5, 1.0, 2.25]


def test_partial_row_for_unknown_key_is_refused_naming_missing_columns(sql_store):
    with pytest.raises(StoreError) as info:
        sql_store.save_job({"job_id": "ghost", "status": "running"})
    assert "sweep_type" in str(info.value) and "ghost" in str(info.value)
    assert sql_store.list_jobs() == []


def test_list_jobs_newest_first_with_status_filter_and_pagination(sql_store):
    base = dt.datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(5):
        status = "completed" if i % 2 else "running"
        sql_store.save_job(make_job(f"job-{i}", status=status, created_at=base + dt.timedelta(hours=i)))
    assert [j["job_id"] for j in sql_store.list_jobs()] == ["job-4", "job-3", "job-2", "job-1", "job-0"]
    assert [j["job_id"] for j in sql_store.list_jobs(status="completed")] == ["job-3", "job-1"]
    assert [j["job_id"] for j in sql_store.list_jobs(limit=2, offset=1)] == ["job-3", "job-2"]
    assert [j["job_id"] for j in sql_store.list_jobs(status="running", limit=1, offset=1)] == ["job-2"]
    assert sql_store.list_jobs(status="cancelled") == []
    assert sql_store.get_job("job-2")["created_at"] == base + dt.timedelta(hours=2)


def test_update_job_transitions_and_sets_updated_at(sql_store):
    sql_store.save_job(make_job())
    before = sql_store.get_job("brave-blue-fox")
    started = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    sql_store.update_job("brave-blue-fox", status="running", started_at=started)
    running = sql_store.get_job("brave-blue-fox")
    assert running["status"] == "running"
    assert running["started_at"] == started and running["started_at"].tzinfo == UTC
    assert running["started_at"].hour == 10  # converted to UTC
    assert running["updated_at"] >= before["updated_at"]
    sql_store.update_job("brave-blue-fox", status="cancelled", completed_runs=3, failed_runs=1, error="stopped")
    done = sql_store.get_job("brave-blue-fox")
    assert (done["status"], done["completed_runs"], done["failed_runs"], done["error"]) == ("cancelled", 3, 1, "stopped")
    assert done["description"] == "a test sweep"  # untouched


def test_update_unknown_job_raises_not_found(sql_store):
    with pytest.raises(NotFound):
        sql_store.update_job("nobody", status="running")


@pytest.mark.parametrize("fields, named", [
    ({"status": "exploded"}, "jobs.status"),
    ({"no_such_column": 1}, "no_such_column"),
    ({"total_runs": 2.5}, "jobs.total_runs"),
    ({"kappas": "0.5,1"}, "jobs.kappas"),
])
def test_bad_update_names_the_field_and_writes_nothing(sql_store, fields, named):
    sql_store.save_job(make_job())
    with pytest.raises(StoreError) as info:
        sql_store.update_job("brave-blue-fox", **fields)
    assert named in str(info.value)
    assert sql_store.get_job("brave-blue-fox")["status"] == "pending"


# --- events -------------------------------------------------------------------------------


def test_events_come_back_oldest_first_with_details(sql_store):
    sql_store.save_job(make_job())
    t0 = dt.datetime(2026, 2, 1, 9, 0, tzinfo=UTC)
    sql_store.log_events([
        {"job_id": "brave-blue-fox", "event_type": "progress", "details": {"done": 2}, "timestamp": t0 + dt.timedelta(seconds=2)},
        {"job_id": "brave-blue-fox", "event_type": "created", "details": {"by": "test"}, "timestamp": t0},
    ])
    sql_store.log_event("brave-blue-fox", "started")
    sql_store.log_event("brave-blue-fox", "completed", {"runs": [1, 2]})
    events = sql_store.list_events("brave-blue-fox")
    assert [e["event_type"] for e in events] == ["created", "progress", "started", "completed"]
    assert events[0]["details"] == {"by": "test"} and events[2]["details"] == {}
    assert events[3]["details"] == {"runs": [1, 2]}
    assert events[0]["timestamp"] == t0
    for event in events:
        assert_utc(event["timestamp"])
    assert sql_store.list_events("other-job") == []


def test_event_of_unknown_type_is_refused(sql_store):
    sql_store.save_job(make_job())
    with pytest.raises(StoreError, match="event_type"):
        sql_store.log_event("brave-blue-fox", "exploded")
    assert sql_store.list_events("brave-blue-fox") == []


# --- runs and metrics ---------------------------------------------------------------------


def test_bulk_upserts_are_idempotent_and_replace_values(sql_store):
    sql_store.save_job(make_job())
    runs = [make_run(f"r{i:05d}", seed=i, kappa=i / 100) for i in range(2500)]
    metrics = [make_metrics(f"r{i:05d}", delta_total=i / 1000, raw_metrics={"i": i}) for i in range(2500)]
    sql_store.upsert_runs(runs)
    sql_store.upsert_metrics(metrics)
    sql_store.upsert_runs(runs)
    sql_store.upsert_metrics(metrics)
    assert len(sql_store.list_runs("brave-blue-fox")) == 2500
    assert len(sql_store.get_metrics(r["run_id"] for r in runs)) == 2500

    sql_store.upsert_metrics([make_metrics(f"r{i:05d}", delta_total=-1.0, raw_metrics={"v": 2}) for i in range(0, 2500, 2)])
    stored = {m["run_id"]: m for m in sql_store.get_metrics(r["run_id"] for r in runs)}
    assert len(stored) == 2500
    assert stored["r00000"]["delta_total"] == -1.0 and stored["r00000"]["raw_metrics"] == {"v": 2}
    assert stored["r00001"]["delta_total"] == 0.001 and stored["r00001"]["raw_metrics"] == {"i": 1}
    assert stored["r02499"]["n_defaults"] == 2


def test_partial_run_upsert_keeps_absent_columns_and_created_at(sql_store):
    run_ids = seeded(sql_store)
    before = {r["run_id"]: r for r in sql_store.list_runs("brave-blue-fox")}
    finished = dt.datetime(2026, 5, 5, 5, 5, 5, 500000, tzinfo=UTC)
    sql_store.upsert_runs([
        {"run_id": run_ids[0], "status": "completed", "completed_at": finished, "execution_time_ms": 12.5,
         "artifact_urls": {"events": "file:///x/events.jsonl"}},
        {"run_id": run_ids[1], "status": "failed", "error": "boom"},
    ])
    after = {r["run_id"]: r for r in sql_store.list_runs("brave-blue-fox")}
    assert after[run_ids[0]]["status"] == "completed" and after[run_ids[0]]["completed_at"] == finished
    assert after[run_ids[0]]["artifact_urls"] == {"events": "file:///x/events.jsonl"}
    assert after[run_ids[0]]["kappa"] == before[run_ids[0]]["kappa"] and after[run_ids[0]]["regime"] == "passive"
    assert after[run_ids[1]]["error"] == "boom" and after[run_ids[1]]["execution_time_ms"] is None
    assert after[run_ids[2]] == before[run_ids[2]]
    for run_id in run_ids[:2]:
        assert after[run_id]["created_at"] == before[run_id]["created_at"]
        assert after[run_id]["updated_at"] >= before[run_id]["updated_at"]
        assert_utc(after[run_id]["created_at"])


TRICKY_TEXT = "tab\there\nnew line\r\\N back\\slash 'single' \"double\" ünïcode ✓ \\"


@pytest.mark.parametrize("n_rows", [3, COPY_MIN_ROWS + 50])  # both the statement and the COPY path
def test_awkward_values_round_trip_identically_in_small_and_large_batches(sql_store, n_rows):
    sql_store.save_job(make_job())
    when = dt.datetime(2026, 7, 1, 23, 59, 59, 123456, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    runs = [make_run(f"r{i:04d}", error=TRICKY_TEXT if i % 2 else None, seed=2**40 + i, kappa=1 / 3,
                     completed_at=when, artifact_urls={"path": "C:\\runs\\x", "text": TRICKY_TEXT} if i % 3 else None)
            for i in range(n_rows)]
    metrics = [make_metrics(f"r{i:04d}", total_loss=float("inf"), cascade_fraction=float("-inf"), n_defaults=None,
                            raw_metrics={"s": TRICKY_TEXT, "n": [1, 2.5, None], "deep": {"ok": True}})
               for i in range(n_rows)]
    sql_store.upsert_runs(runs)
    sql_store.upsert_metrics(metrics)
    stored = sql_store.list_runs("brave-blue-fox")
    assert len(stored) == n_rows
    for run, back in zip(runs, stored):
        assert back["error"] == run["error"] and back["seed"] == run["seed"] and back["kappa"] == 1 / 3
        assert back["artifact_urls"] == run["artifact_urls"]
        assert back["completed_at"] == when and back["completed_at"].tzinfo == UTC
    for back in sql_store.get_metrics(r["run_id"] for r in runs):
        assert back["total_loss"] == float("inf") and back["cascade_fraction"] == float("-inf")
        assert back["n_defaults"] is None
        assert back["raw_metrics"] == {"s": TRICKY_TEXT, "n": [1, 2.5, None], "deep": {"ok": True}}


def test_many_jobs_with_lists_round_trip(sql_store):
    # No public call writes jobs in bulk; this drives the bulk path with array columns directly.
    jobs = [make_job(f"job-{i:04d}", kappas=[0.1 * i, 1e300], seeds=[i, 2**40], cloud=bool(i % 2),
                     description=TRICKY_TEXT) for i in range(COPY_MIN_ROWS + 5)]
    sql_store._upsert("jobs", jobs)
    back = {j["job_id"]: j for j in sql_store.list_jobs(limit=10_000)}
    assert len(back) == len(jobs)
    for job in jobs:
        got = back[job["job_id"]]
        assert got["kappas"] == job["kappas"] and got["seeds"] == job["seeds"]
        assert got["cloud"] is job["cloud"] and got["description"] == TRICKY_TEXT and got["spec"] == job["spec"]
    with pytest.raises(StoreError, match="jobs.kappas"):
        sql_store.save_job(make_job("job-0001", kappas=[0.5, float("nan")]))
    assert sql_store.get_job("job-0001")["kappas"] == [0.1, 1e300]


def test_duplicate_keys_in_one_call_merge_last_wins(sql_store):
    seeded(sql_store, 1)
    sql_store.upsert_metrics([make_metrics("brave-blue-fox-r0", delta_total=1.0),
                              make_metrics("brave-blue-fox-r0", delta_total=2.0)])
    (row,) = sql_store.get_metrics(["brave-blue-fox-r0"])
    assert row["delta_total"] == 2.0


def test_list_runs_filters_by_status_and_ids(sql_store):
    run_ids = seeded(sql_store, 6)
    seeded(sql_store, 2, job_id="other-job")
    sql_store.upsert_runs([{"run_id": run_ids[i], "status": "completed"} for i in (1, 3, 4)])
    assert [r["run_id"] for r in sql_store.list_runs("brave-blue-fox")] == run_ids
    assert [r["run_id"] for r in sql_store.list_runs("brave-blue-fox", status="completed")] == [run_ids[i] for i in (1, 3, 4)]
    assert [r["run_id"] for r in sql_store.list_runs("brave-blue-fox", run_ids=[run_ids[5], run_ids[0], "other-job-r0"])] == [run_ids[0], run_ids[5]]
    assert [r["run_id"] for r in sql_store.list_runs("brave-blue-fox", status="completed", run_ids=run_ids[:4])] == [run_ids[1], run_ids[3]]
    assert sql_store.list_runs("brave-blue-fox", run_ids=[]) == []


def test_run_counts_and_completed_run_ids(sql_store):
    run_ids = seeded(sql_store, 5)
    sql_store.upsert_runs([{"run_id": run_ids[0], "status": "completed"}, {"run_id": run_ids[1], "status": "completed"},
                           {"run_id": run_ids[2], "status": "failed"}, {"run_id": run_ids[3], "status": "running"}])
    counts = sql_store.run_counts("brave-blue-fox")
    assert counts == {"pending": 1, "running": 1, "completed": 2, "failed": 1, "cancelled": 0}
    assert sql_store.run_counts("nothing") == dict.fromkeys(schema.RUN_STATUSES, 0)
    # completed *and* with metrics: run 1 has no metrics yet; run 2 has metrics but failed
    sql_store.upsert_metrics([make_metrics(run_ids[0]), make_metrics(run_ids[2])])
    assert sql_store.completed_run_ids("brave-blue-fox") == {run_ids[0]}
    assert abc_completed_run_ids(sql_store, "brave-blue-fox") == {run_ids[0]}


def abc_completed_run_ids(store, job_id):
    """The ABC's own definition, to check the SQL shortcut agrees with it."""
    from bilancio_pipeline.storage.base import Store

    return Store.completed_run_ids(store, job_id)


def test_metrics_round_trip_floats_ints_json_and_nan(sql_store):
    seeded(sql_store, 1)
    row = make_metrics("brave-blue-fox-r0", delta_total=float("nan"), phi_total=1e-12, total_trades=10**6,
                       n_clears=3.0, raw_metrics={"inf": float("inf"), "list": [1.5, None, "x"], "flag": True})
    sql_store.upsert_metrics([row])
    (back,) = sql_store.get_metrics(["brave-blue-fox-r0"])
    assert back["delta_total"] is None  # NaN is stored as NULL on both backends
    assert back["phi_total"] == 1e-12 and back["total_trades"] == 10**6
    assert back["n_clears"] == 3 and type(back["n_clears"]) is int
    assert back["raw_metrics"] == {"inf": None, "list": [1.5, None, "x"], "flag": True}
    assert back["cascade_fraction"] is None
    assert set(back) == set(schema.metrics.columns.keys())
    assert_utc(back["created_at"])


def test_json_none_is_sql_null(sql_store):
    seeded(sql_store, 1)
    sql_store.upsert_metrics([make_metrics("brave-blue-fox-r0", raw_metrics=None)])
    assert scalar(sql_store, "select count(*) from metrics where raw_metrics is null") == 1


def test_job_metrics_upsert_and_read(sql_store):
    sql_store.save_job(make_job())
    assert sql_store.get_job_metrics("brave-blue-fox") is None
    row = {"job_id": "brave-blue-fox", "n_comparisons": 4, "n_pairs": 4, "mean_trading_effect": 0.1,
           "positive_effects": 3, "raw_summary": {"pairs": [[0.5, 0.1]]}}
    sql_store.save_job_metrics(row)
    first = sql_store.get_job_metrics("brave-blue-fox")
    sql_store.save_job_metrics({**row, "mean_trading_effect": 0.2, "n_pairs": 5})
    second = sql_store.get_job_metrics("brave-blue-fox")
    assert (second["mean_trading_effect"], second["n_pairs"], second["positive_effects"]) == (0.2, 5, 3)
    assert second["raw_summary"] == {"pairs": [[0.5, 0.1]]}
    assert second["created_at"] == first["created_at"]
    assert_utc(second["updated_at"])


def test_metrics_for_a_run_that_does_not_exist_are_refused(sql_store):
    sql_store.save_job(make_job())
    with pytest.raises(StoreError) as info:
        sql_store.upsert_metrics([make_metrics("ghost-run")])
    assert info.value.backend == sql_store.backend
    assert not info.value.transient
    assert "foreign key" in str(info.value).lower()


# --- queries ------------------------------------------------------------------------------


def test_query_results_joins_runs_with_metrics(sql_store):
    run_ids = seeded(sql_store, 4)
    seeded(sql_store, 2, job_id="other-job")
    sql_store.upsert_metrics([make_metrics(run_ids[i], delta_total=d) for i, d in ((0, 0.4), (1, 0.1), (2, 0.3))])
    rows = sql_store.query_results(job_id="brave-blue-fox")
    assert [r["run_id"] for r in rows] == run_ids
    assert set(rows[0]) == set(schema.RUN_RESULTS_COLUMNS)
    assert rows[3]["delta_total"] is None and rows[3]["kappa"] == 2.0  # run without metrics still listed
    assert len(sql_store.query_results()) == 6

    passive = sql_store.query_results(job_id="brave-blue-fox", regime="passive")
    assert [r["run_id"] for r in passive] == [run_ids[0], run_ids[2]]

    by_delta = sql_store.query_results(job_id="brave-blue-fox", order_by="delta_total")
    assert [r["run_id"] for r in by_delta] == [run_ids[1], run_ids[2], run_ids[0], run_ids[3]]  # NULL last
    top = sql_store.query_results(job_id="brave-blue-fox", order_by="delta_total", descending=True, limit=2)
    assert [r["delta_total"] for r in top] == [0.4, 0.3]
    assert sql_store.query_results(job_id="brave-blue-fox", limit=0) == []


def test_query_results_with_filter_expression(sql_store):
    from bilancio_pipeline.storage.filters import parse_filter

    run_ids = seeded(sql_store, 4)
    sql_store.upsert_metrics([make_metrics(run_ids[i], delta_total=d) for i, d in ((0, 0.4), (1, 0.1), (2, 0.3))])
    where = parse_filter("kappa < 1.6 and delta_total > 0.2")
    assert [r["run_id"] for r in sql_store.query_results(where)] == [run_ids[0], run_ids[2]]
    where = parse_filter("delta_total = null or regime = 'active'")
    assert [r["run_id"] for r in sql_store.query_results(where, order_by="kappa", descending=True)] == [run_ids[3], run_ids[1]]
    # a value that looks like SQL is only ever data
    assert sql_store.query_results(parse_filter("regime = 'x'' or 1=1 --'")) == []
    assert len(sql_store.query_results(job_id="brave-blue-fox")) == 4


def test_query_results_refuses_unknown_order_column(sql_store):
    with pytest.raises(StoreError) as info:
        sql_store.query_results(order_by="kappa; drop table runs")
    assert "kappa; drop table runs" in str(info.value) and "run_results" in str(info.value)


# --- delete -------------------------------------------------------------------------------


def test_delete_job_cascades_to_every_table(sql_store):
    run_ids = seeded(sql_store, 3)
    keep = seeded(sql_store, 1, job_id="keep-me")
    sql_store.upsert_metrics([make_metrics(r) for r in run_ids] + [make_metrics(keep[0], "keep-me")])
    sql_store.log_event("brave-blue-fox", "created")
    sql_store.save_job_metrics({"job_id": "brave-blue-fox", "n_comparisons": 1, "n_pairs": 1})
    sql_store.delete_job("brave-blue-fox")
    with pytest.raises(NotFound):
        sql_store.get_job("brave-blue-fox")
    assert sql_store.list_runs("brave-blue-fox") == []
    assert sql_store.get_metrics(run_ids) == []
    assert sql_store.list_events("brave-blue-fox") == []
    assert sql_store.get_job_metrics("brave-blue-fox") is None
    counts = {t: scalar(sql_store, f"select count(*) from {t}") for t in schema.TABLES}
    assert counts == {"jobs": 1, "runs": 1, "metrics": 1, "job_events": 0, "job_metrics": 0}
    sql_store.delete_job("brave-blue-fox")  # deleting again is a no-op


def test_ping(sql_store):
    sql_store.ping()


# --- a store that is down or refuses a write ----------------------------------------------

DUMMY_PASSWORD = "dummy-Pa55word-never-shown"


def with_password(url: str, scheme: str = "postgresql") -> str:
    """The same database, reached as postgres:PASSWORD (the test server trusts any password)."""
    return url.replace("postgresql+psycopg2://postgres@", f"{scheme}://postgres:{DUMMY_PASSWORD}@")


def test_refused_write_rolls_back_the_whole_call_and_keeps_stored_rows(sql_store):
    run_ids = seeded(sql_store, 3000)
    sql_store.upsert_metrics([make_metrics(r, delta_total=1.0) for r in run_ids[:10]])
    batch = [make_metrics(r, delta_total=2.0) for r in run_ids]
    batch[2500] = make_metrics("ghost-run-in-the-middle", delta_total=2.0)  # violates the foreign key
    with pytest.raises(StoreError) as info:
        sql_store.upsert_metrics(batch)
    assert info.value.backend == sql_store.backend and str(info.value).startswith(f"{sql_store.backend}: ")
    stored = sql_store.get_metrics(run_ids)
    assert [m["run_id"] for m in stored] == run_ids[:10]  # none of the 3000 went in
    assert {m["delta_total"] for m in stored} == {1.0}  # the earlier values are intact


@pytest.mark.postgres
def test_unreachable_postgres_is_a_transient_store_error_without_password():
    from bilancio_pipeline.benchmarks.pg_server import free_port

    store = SqlStore(f"postgresql://bilancio:{DUMMY_PASSWORD}@127.0.0.1:{free_port()}/bilancio?connect_timeout=3")
    with pytest.raises(StoreError) as info:
        store.list_jobs()
    error = info.value
    assert error.backend == "postgres" and error.transient
    assert str(error).startswith("postgres: ")
    assert "127.0.0.1" in str(error)
    assert DUMMY_PASSWORD not in str(error) and DUMMY_PASSWORD not in repr(error)
    assert DUMMY_PASSWORD not in repr(store)
    with pytest.raises(StoreError) as info:
        store.upsert_runs([make_run("r1")])
    assert info.value.transient and DUMMY_PASSWORD not in str(info.value)
    store.close()


@pytest.mark.postgres
def test_constraint_error_on_postgres_has_no_password(postgres_url):
    store = SqlStore(with_password(postgres_url))
    store.save_job(make_job())
    with pytest.raises(StoreError) as info:
        store.upsert_metrics([make_metrics("ghost")])
    assert not info.value.transient and DUMMY_PASSWORD not in str(info.value)
    store.close()


def test_unparseable_url_error_has_no_password():
    with pytest.raises(StoreError) as info:
        SqlStore(f"postgresql://user:{DUMMY_PASSWORD}@host:notaport/db")
    assert DUMMY_PASSWORD not in str(info.value)
    with pytest.raises(StoreError, match="unsupported"):
        SqlStore("mysql://user@host/db")


@pytest.mark.postgres
@pytest.mark.parametrize("scheme", ["postgres", "postgresql"])
def test_plain_supabase_style_urls_use_psycopg2(postgres_url, scheme):
    store = SqlStore(with_password(postgres_url, scheme))
    assert store.backend == "postgres" and store.url.drivername == "postgresql+psycopg2"
    store.save_job(make_job())
    assert store.get_job("brave-blue-fox")["n_agents"] == 5
    store.close()


@pytest.mark.postgres
def test_postgres_store_applies_the_migrations_to_an_empty_database(postgres_server):
    postgres_server.create_database("not_migrated")
    try:
        with SqlStore(postgres_server.url("not_migrated")) as store:
            assert store.list_jobs() == []
            store.save_job(make_job())
        conn = postgres_server.connect("not_migrated")
        with conn.cursor() as cur:
            cur.execute("select version from supabase_migrations.schema_migrations order by version")
            recorded = [r[0] for r in cur.fetchall()]
        conn.close()
        assert recorded == [m.version for m in migrations.available()]
    finally:
        postgres_server.drop_database("not_migrated")


def test_sqlite_creates_its_directory_and_schema_and_reopens(tmp_path):
    url = f"sqlite:///{tmp_path / 'deep' / 'er' / 'bilancio.db'}"
    with SqlStore(url) as store:
        store.save_job(make_job())
    assert (tmp_path / "deep" / "er" / "bilancio.db").is_file()
    with SqlStore(url) as again:  # a second open finds, and keeps, what is there
        assert again.get_job("brave-blue-fox")["kappas"] == [0.5, 1.0, 2.25]


def test_sqlite_file_takes_concurrent_writers(sqlite_url):
    """Several stores (as several processes would) writing one file at once: WAL and the busy
    timeout make them wait for each other instead of failing with 'database is locked'."""
    from concurrent.futures import ThreadPoolExecutor

    with SqlStore(sqlite_url) as setup:
        setup.save_job(make_job())

    def writer(worker: int) -> None:
        with SqlStore(sqlite_url) as store:
            for batch in range(3):
                ids = [f"w{worker}-b{batch}-r{i}" for i in range(200)]
                store.upsert_runs([make_run(r) for r in ids])
                store.upsert_runs([{"run_id": r, "status": "completed"} for r in ids])
                store.upsert_metrics([make_metrics(r) for r in ids])
                store.log_event("brave-blue-fox", "progress", {"worker": worker, "batch": batch})

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(writer, range(4)))
    with SqlStore(sqlite_url) as store:
        assert store.run_counts("brave-blue-fox")["completed"] == 4 * 3 * 200
        assert len(store.completed_run_ids("brave-blue-fox")) == 4 * 3 * 200
        assert len(store.list_events("brave-blue-fox")) == 12


def test_values_of_the_wrong_kind_are_refused_naming_the_column(sql_store):
    sql_store.save_job(make_job())
    bad_rows = [
        (make_run("r1", kappa="high"), "runs.kappa"),
        ({**make_run("r1"), "run_id": 17}, "runs.run_id"),
        (make_run("r1", started_at="yesterday"), "runs.started_at"),
        (make_run("r1", artifact_urls={"s": {1, 2}}), "runs.artifact_urls"),
        (make_run("r1", regime="bank_passive"), "runs.regime"),
        (make_run("r1", no_such="x"), "no_such"),
    ]
    for row, named in bad_rows:
        with pytest.raises(StoreError) as info:
            sql_store.upsert_runs([make_run("r0"), row])
        assert named in str(info.value)
    assert sql_store.list_runs("brave-blue-fox") == []  # nothing written, not even the good row


@pytest.mark.postgres
def test_db_status_shows_no_password(postgres_url):
    from click.testing import CliRunner

    from bilancio_pipeline.cli.main import cli

    result = CliRunner().invoke(cli, ["db", "status"], env={"BILANCIO_SUPABASE_DB_URL": with_password(postgres_url)})
    assert result.exit_code == 0, result.output
    assert "postgres:***@" in result.output and DUMMY_PASSWORD not in result.output
    assert "pending:        0" in result.output
