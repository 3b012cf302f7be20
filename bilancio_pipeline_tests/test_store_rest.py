"""The Supabase REST store, tested at the HTTP transport against an in-memory PostgREST.

The requests are checked as they go on the wire (method, path, query, headers, body), and the
answers replay PostgREST's real behaviour and error bodies. The SQL semantics behind them
(keys, constraints, cascades) are tested on a real Postgres by the SQL store's tests.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import traceback
import uuid
from datetime import datetime, timedelta, timezone

import httpx
import pytest
import tenacity

from bilancio_pipeline.storage import filters, schema
from bilancio_pipeline.storage.base import NotFound, StoreError
from bilancio_pipeline.storage.rest import RestStore
from bilancio_pipeline_tests.fixtures.fake_postgrest import FakePostgrest, error

KEY = "sb-test-service-key-0123456789abcdef"
URL = "https://project-ref.supabase.co"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def server():
    return FakePostgrest(key=KEY)


@pytest.fixture
def store(server):
    store = RestStore(URL, KEY, http_client=server.client(), wait=tenacity.wait_none(), deadline_s=5)
    yield store
    store.close()


def job_row(job_id="brave-otter", **overrides):
    row = {
        "job_id": job_id, "status": "pending", "sweep_type": "ring", "description": "test sweep",
        "n_agents": 5, "maturity_days": 5, "kappas": [0.5, 1.0], "concentrations": [1.0], "mus": [0.0, 0.5],
        "outside_mid_ratios": [1.0], "seeds": [42, 43], "cash_accounting": "conserving", "executor": "local",
        "cloud": False, "spec": {"kappas": [0.5, 1.0], "note": "x"}, "provenance": {"git_sha": "abc"},
        "total_runs": 4, "completed_runs": 0, "failed_runs": 0, "created_at": T0, "updated_at": T0,
    }
    row.update(overrides)
    return row


def run_row(i, job_id="brave-otter", **overrides):
    row = {
        "run_id": f"run-{i:05d}", "job_id": job_id, "status": "completed", "regime": "passive" if i % 2 else "active",
        "n_agents": 5, "maturity_days": 5, "kappa": [0.25, 0.5, 1.0, 2.0][i % 4], "concentration": 1.0,
        "mu": (i % 3) / 2, "outside_mid_ratio": 1.0, "seed": 1000 + i, "cash_accounting": "conserving",
        "execution_time_ms": 12.5, "error": None, "artifact_base": f"{job_id}/runs/run-{i:05d}",
        "artifact_urls": {"events": f"file:///v/{i}/events.jsonl"}, "created_at": T0, "updated_at": T0,
    }
    row.update(overrides)
    return row


def metric_row(i, job_id="brave-otter", **overrides):
    row = {
        "run_id": f"run-{i:05d}", "job_id": job_id, "delta_total": (i % 10) / 10, "phi_total": 1 - (i % 10) / 10,
        "n_defaults": i % 5, "time_to_stability": 3 + i % 4, "trading_effect": None,
        "raw_metrics": {"G_t": [0.1, 0.2]}, "created_at": T0, "updated_at": T0,
    }
    row.update(overrides)
    return row


def seeded(store, n_runs, job_id="brave-otter", metrics=True):
    store.save_job(job_row(job_id))
    store.upsert_runs([run_row(i, job_id) for i in range(n_runs)])
    if metrics:
        store.upsert_metrics([metric_row(i, job_id) for i in range(n_runs)])


def posts(server, table):
    return [r for r in server.requests if r.method == "POST" and r.url.path == f"/rest/v1/{table}"]


def gets(server, table):
    return [r for r in server.requests if r.method == "GET" and r.url.path == f"/rest/v1/{table}"]


# --- the write contract --------------------------------------------------------------------


def test_bulk_upsert_goes_out_in_chunks_with_the_conflict_key(store, server):
    store.save_job(job_row())
    server.requests.clear()
    rows = [run_row(i) for i in range(2500)]
    store.upsert_runs(rows)

    sent = posts(server, "runs")
    assert [len(json.loads(r.content)) for r in sent] == [500] * 5
    for request in sent:
        assert request.url.host == "project-ref.supabase.co"
        assert request.url.params["on_conflict"] == "run_id"
        assert "resolution=merge-duplicates" in request.headers["prefer"].split(",")
        assert set(request.url.params["columns"].replace('"', "").split(",")) == set(rows[0])
        assert request.headers["apikey"] == KEY
        assert request.headers["authorization"] == f"Bearer {KEY}"
        assert request.headers["content-type"] == "application/json"
    sent_ids = [row["run_id"] for r in sent for row in json.loads(r.content)]
    assert sent_ids == [r["run_id"] for r in rows]
    assert len(server.rows("runs")) == 2500


def test_rows_are_sent_as_json_with_utc_timestamps(store, server):
    tz = timezone(timedelta(hours=2))
    store.save_job(job_row(created_at=datetime(2026, 3, 1, 14, 0, tzinfo=tz), kappas=(0.5, 2)))
    body = json.loads(posts(server, "jobs")[0].content)
    assert body[0]["created_at"] == "2026-03-01T12:00:00+00:00"
    assert body[0]["kappas"] == [0.5, 2]
    assert body[0]["spec"] == {"kappas": [0.5, 1.0], "note": "x"}
    assert body[0]["cloud"] is False


def test_rows_with_different_columns_go_in_separate_requests(store, server):
    seeded(store, 3, metrics=False)
    short = run_row(0, status="failed", error="boom")
    del short["execution_time_ms"], short["artifact_urls"]
    server.requests.clear()
    store.upsert_runs([short, run_row(1, status="running"), run_row(2, status="running")])
    # Two column sets, two requests: the short row must not null the columns it lacks.
    sent = posts(server, "runs")
    assert sorted(len(json.loads(r.content)) for r in sent) == [1, 2]
    for request in sent:
        body = json.loads(request.content)
        assert set(request.url.params["columns"].replace('"', "").split(",")) == set(body[0])
    runs = {r["run_id"]: r for r in store.list_runs("brave-otter")}
    assert runs["run-00000"]["status"] == "failed" and runs["run-00000"]["execution_time_ms"] == 12.5
    assert runs["run-00000"]["artifact_urls"] == {"events": "file:///v/0/events.jsonl"}
    assert runs["run-00001"]["status"] == "running"


def test_partial_rows_update_stored_rows_and_keep_the_rest(store, server):
    seeded(store, 3, metrics=False)
    server.rows("runs")[0]["created_at"] = "2026-01-01T00:00:00+00:00"
    server.requests.clear()
    store.upsert_runs([
        {"run_id": "run-00000", "status": "failed", "error": "boom"},
        {"run_id": "run-00001", "status": "completed", "execution_time_ms": 99.0},
    ])
    # One read of the stored rows, then one upsert of complete rows.
    assert [r.method for r in server.requests] == ["GET", "POST"]
    assert server.requests[0].url.params["run_id"] == "in.(run-00000,run-00001)"
    runs = {r["run_id"]: r for r in store.list_runs("brave-otter")}
    assert runs["run-00000"]["status"] == "failed" and runs["run-00000"]["error"] == "boom"
    assert runs["run-00000"]["kappa"] == 0.25 and runs["run-00000"]["seed"] == 1000
    assert runs["run-00000"]["created_at"] == datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert runs["run-00000"]["updated_at"] > T0
    assert runs["run-00001"]["execution_time_ms"] == 99.0 and runs["run-00001"]["regime"] == "passive"
    assert runs["run-00002"]["status"] == "completed" and runs["run-00002"]["updated_at"] == T0


def test_partial_row_for_an_unknown_key_is_refused_naming_what_is_missing(store, server):
    seeded(store, 1, metrics=False)
    server.requests.clear()
    with pytest.raises(StoreError) as caught:
        store.upsert_runs([{"run_id": "run-00000", "status": "failed"}, {"run_id": "ghost", "status": "failed"}])
    assert "ghost" in str(caught.value) and "regime" in str(caught.value) and "not stored yet" in str(caught.value)
    assert caught.value.transient is False
    assert [r.method for r in server.requests] == ["GET"]  # nothing written, not even the known row
    assert store.list_runs("brave-otter")[0]["status"] == "completed"


def test_duplicate_keys_in_one_call_merge_last_wins(store, server):
    seeded(store, 1, metrics=False)
    store.upsert_metrics([metric_row(0, delta_total=1.0), metric_row(0, delta_total=2.0, n_defaults=9)])
    assert len(json.loads(posts(server, "metrics")[-1].content)) == 1
    (row,) = store.get_metrics(["run-00000"])
    assert row["delta_total"] == 2.0 and row["n_defaults"] == 9


def test_upsert_sets_updated_at_and_leaves_created_at_to_the_database(store, server):
    store.save_job(job_row())
    row = run_row(0)
    del row["created_at"], row["updated_at"]
    before = datetime.now(timezone.utc)
    store.upsert_runs([row])
    body = json.loads(posts(server, "runs")[-1].content)[0]
    assert "created_at" not in body
    assert datetime.fromisoformat(body["updated_at"]) >= before - timedelta(seconds=1)


def test_bad_rows_are_refused_before_anything_is_sent(store, server):
    store.save_job(job_row())
    server.requests.clear()
    refusals = [
        (lambda: store.upsert_runs([run_row(0), {**run_row(1), "kapa": 0.3}]), "runs has no column 'kapa'"),
        (lambda: store.upsert_metrics([{"job_id": "brave-otter", "delta_total": 0.1}]), "metrics: row 0 has no run_id"),
        (lambda: store.upsert_metrics([metric_row(0, raw_metrics=object())]), "metrics.raw_metrics"),
        (lambda: store.upsert_runs([run_row(0, regime="sideways")]), "runs.regime: 'sideways' is not one of"),
        (lambda: store.upsert_runs([run_row(0, seed=2.5)]), "runs.seed: 2.5 is not a whole number"),
        (lambda: store.upsert_runs([run_row(0, kappa="high")]), "runs.kappa"),
        (lambda: store.save_job(job_row(kappas="0.5,1")), "jobs.kappas"),
        (lambda: store.log_event("brave-otter", "exploded"), "job_events.event_type"),
        (lambda: store.update_job("brave-otter", colour="red"), "jobs has no column 'colour'"),
        (lambda: store.query_results(order_by="kappa; drop table runs"), "cannot order by"),
    ]
    for attempt, message in refusals:
        with pytest.raises(StoreError, match=re.escape(message)) as caught:
            attempt()
        assert caught.value.transient is False
    assert server.requests == []


def test_non_finite_floats_survive_the_round_trip(store, server):
    seeded(store, 1, metrics=False)
    store.upsert_metrics([metric_row(0, delta_total=float("nan"), total_loss=float("inf"), n_clears=3.0,
                                     raw_metrics={"x": float("nan"), "y": [1.5, None, "z"]})])
    body = json.loads(posts(server, "metrics")[-1].content)[0]
    # NaN is stored as NULL (as the SQL store does); float8 reads 'Infinity'; JSON has neither.
    assert body["delta_total"] is None and body["total_loss"] == "Infinity" and body["n_clears"] == 3
    assert body["raw_metrics"] == {"x": None, "y": [1.5, None, "z"]}
    (row,) = store.get_metrics(["run-00000"])
    assert row["delta_total"] is None and row["total_loss"] == math.inf
    assert row["n_clears"] == 3 and type(row["n_clears"]) is int


# --- reading -------------------------------------------------------------------------------


def test_job_round_trip_gives_typed_values(store):
    store.save_job(job_row())
    job = store.get_job("brave-otter")
    assert job["created_at"] == T0 and job["created_at"].tzinfo is not None
    assert job["kappas"] == [0.5, 1.0] and all(isinstance(k, float) for k in job["kappas"])
    assert job["seeds"] == [42, 43] and job["n_agents"] == 5 and isinstance(job["n_agents"], int)
    assert job["spec"] == {"kappas": [0.5, 1.0], "note": "x"}
    assert job["cloud"] is False


def test_unknown_job_is_not_found_without_single_object_request(store, server):
    with pytest.raises(NotFound, match="job 'missing' not found"):
        store.get_job("missing")
    (request,) = server.requests
    assert request.method == "GET" and request.url.params["job_id"] == "eq.missing"
    assert "vnd.pgrst.object" not in request.headers.get("accept", "")


def test_list_jobs_newest_first_with_status_limit_and_offset(store, server):
    for i in range(5):
        store.save_job(job_row(f"job-{i}", created_at=T0 + timedelta(hours=i), status="completed" if i % 2 else "running"))
    assert [j["job_id"] for j in store.list_jobs()] == ["job-4", "job-3", "job-2", "job-1", "job-0"]
    assert [j["job_id"] for j in store.list_jobs(status="completed")] == ["job-3", "job-1"]
    assert [j["job_id"] for j in store.list_jobs(limit=2, offset=1)] == ["job-3", "job-2"]


def test_reads_page_past_the_server_row_cap(store, server):
    seeded(store, 2345, metrics=False)
    server.requests.clear()
    runs = store.list_runs("brave-otter")
    assert len(runs) == 2345
    assert [r["run_id"] for r in runs] == [f"run-{i:05d}" for i in range(2345)]
    pages = gets(server, "runs")
    assert [(p.url.params["offset"], p.url.params["limit"]) for p in pages] == [("0", "1000"), ("1000", "1000"), ("2000", "1000")]
    assert all(p.url.params["order"] == "run_id.asc" for p in pages)


def test_metrics_for_many_runs_keep_urls_short(store, server):
    seeded(store, 2345)
    server.requests.clear()
    ids = [f"run-{i:05d}" for i in range(2345)]
    rows = store.get_metrics(ids)
    assert [r["run_id"] for r in rows] == ids
    sent = gets(server, "metrics")
    assert len(sent) == math.ceil(2345 / 100)
    assert max(len(str(r.url)) for r in sent) < 4000
    assert rows[7]["delta_total"] == 0.7 and rows[7]["n_defaults"] == 2


def test_list_runs_by_status_and_ids(store):
    seeded(store, 10, metrics=False)
    store.upsert_runs([run_row(3, status="failed"), run_row(4, status="failed")])
    assert [r["run_id"] for r in store.list_runs("brave-otter", status="failed")] == ["run-00003", "run-00004"]
    picked = store.list_runs("brave-otter", run_ids=["run-00009", "run-00001", "nope"])
    assert [r["run_id"] for r in picked] == ["run-00001", "run-00009"]
    assert store.list_runs("brave-otter", status="failed", run_ids=["run-00004", "run-00005"])[0]["run_id"] == "run-00004"
    assert store.list_runs("other-job") == []


def test_completed_run_ids_need_metrics(store):
    seeded(store, 6, metrics=False)
    store.upsert_metrics([metric_row(i) for i in (0, 2)])
    store.upsert_runs([run_row(2, status="failed")])
    assert store.completed_run_ids("brave-otter") == {"run-00000"}


def test_run_counts_by_status_with_exact_counts(store, server):
    seeded(store, 2345, metrics=False)
    store.upsert_runs([run_row(i, status="failed") for i in range(10)])
    server.requests.clear()
    assert store.run_counts("brave-otter") == {"pending": 0, "running": 0, "completed": 2335, "failed": 10, "cancelled": 0}
    assert all(r.method == "HEAD" and "count=exact" in r.headers["prefer"] for r in server.requests)
    assert len(server.requests) == len(schema.RUN_STATUSES)


def test_events_in_order_with_timestamps(store, server):
    store.save_job(job_row())
    store.log_event("brave-otter", "created", {"by": "test"})
    store.log_events([{"job_id": "brave-otter", "event_type": "started"},
                      {"job_id": "brave-otter", "event_type": "progress", "details": {"done": 1}}])
    events = store.list_events("brave-otter")
    assert [e["event_type"] for e in events] == ["created", "started", "progress"]
    assert events[0]["details"] == {"by": "test"}
    assert all(isinstance(e["timestamp"], datetime) and e["timestamp"].tzinfo for e in events)
    inserts = posts(server, "job_events")
    assert all("resolution" not in r.headers["prefer"] for r in inserts)


def test_update_job_sets_fields_and_updated_at(store, server):
    store.save_job(job_row())
    store.update_job("brave-otter", status="completed", completed_runs=4, completed_at=T0 + timedelta(hours=1))
    patch = [r for r in server.requests if r.method == "PATCH"][-1]
    assert patch.url.path == "/rest/v1/jobs" and patch.url.params["job_id"] == "eq.brave-otter"
    assert "return=representation" in patch.headers["prefer"]
    job = store.get_job("brave-otter")
    assert job["status"] == "completed" and job["completed_runs"] == 4
    assert job["completed_at"] == T0 + timedelta(hours=1)
    assert job["updated_at"] > T0


def test_update_of_unknown_job_is_not_found(store):
    with pytest.raises(NotFound, match="job 'ghost' not found"):
        store.update_job("ghost", status="failed")


def test_delete_job_cascades(store, server):
    seeded(store, 5)
    seeded(store, 2, job_id="other-job")
    store.log_event("brave-otter", "created")
    store.save_job_metrics({"job_id": "brave-otter", "n_comparisons": 2, "n_pairs": 2, "created_at": T0, "updated_at": T0})
    store.delete_job("brave-otter")
    (delete,) = [r for r in server.requests if r.method == "DELETE"]
    assert delete.url.path == "/rest/v1/jobs" and delete.url.params["job_id"] == "eq.brave-otter"
    with pytest.raises(NotFound):
        store.get_job("brave-otter")
    assert store.list_runs("brave-otter") == [] and store.list_events("brave-otter") == []
    assert store.get_job_metrics("brave-otter") is None
    assert len(store.list_runs("other-job")) == 2 and len(store.get_metrics(["run-00000", "run-00001"])) == 2


def test_job_metrics_upsert_and_read(store, server):
    store.save_job(job_row())
    assert store.get_job_metrics("brave-otter") is None
    row = {"job_id": "brave-otter", "n_comparisons": 3, "n_pairs": 3, "mean_trading_effect": 0.25,
           "raw_summary": {"comparisons": [1, 2]}, "created_at": T0, "updated_at": T0}
    store.save_job_metrics(row)
    store.save_job_metrics({**row, "mean_trading_effect": 0.5})
    assert posts(server, "job_metrics")[-1].url.params["on_conflict"] == "job_id"
    got = store.get_job_metrics("brave-otter")
    assert got["mean_trading_effect"] == 0.5 and got["n_pairs"] == 3 and got["raw_summary"] == {"comparisons": [1, 2]}
    assert len(server.rows("job_metrics")) == 1


# --- queries -------------------------------------------------------------------------------

FILTERS = [
    "kappa < 0.5",
    "kappa >= 0.5 and delta_total > 0.3",
    "regime = 'active' or mu >= 1",
    "not (kappa = 1 or delta_total < 0.2)",
    "trading_effect = null and n_defaults != 2",
    "error != null",
    "error = 'fai,led) \"q\".x' or (seed > 1010 and not regime = 'passive')",
    "error = 'fai,led) \"q\".x'",
]


@pytest.mark.parametrize("text", FILTERS)
def test_query_results_matches_the_filter(store, server, text):
    seeded(store, 30)
    store.upsert_runs([run_row(5, error='fai,led) "q".x', status="failed"), run_row(6, error="x")])
    expr = filters.parse_filter(text)
    expected = sorted(r["run_id"] for r in server._view("run_results") if filters.evaluate(expr, _typed(r)) is True)
    got = store.query_results(expr)
    assert [r["run_id"] for r in got] == expected
    assert expected, "the data should give every filter something to find"
    request = gets(server, "run_results")[-1]
    for key, value in filters.to_postgrest(expr):
        assert value in request.url.params.get_list(key)


def _typed(row):
    return {k: (float(v) if isinstance(v, int) and not isinstance(v, bool) else v) for k, v in row.items()}


def test_query_results_scope_order_and_limit(store, server):
    seeded(store, 40)
    seeded(store, 5, job_id="other-job")
    rows = store.query_results(job_id="brave-otter", regime="active", order_by="delta_total", descending=True, limit=7)
    assert len(rows) == 7 and all(r["job_id"] == "brave-otter" and r["regime"] == "active" for r in rows)
    deltas = [r["delta_total"] for r in rows]
    assert deltas == sorted(deltas, reverse=True)
    request = gets(server, "run_results")[-1]
    assert request.url.params["order"] == "delta_total.desc.nullslast,job_id.asc,run_id.asc"
    assert request.url.params["limit"] == "7"
    assert set(rows[0]) == set(schema.RUN_RESULTS_COLUMNS)


def test_query_results_pages_to_a_large_limit(store):
    seeded(store, 1500)
    assert len(store.query_results(limit=1200)) == 1200
    assert len(store.query_results()) == 1500


# --- failures ------------------------------------------------------------------------------


@pytest.mark.parametrize("failure", [
    httpx.Response(503, text="<html>upstream unavailable</html>"),
    httpx.Response(429, json={"message": "Too many requests"}),
    httpx.ConnectError("connection refused"),
    httpx.ReadTimeout("read timed out"),
    error(500, "40001", "could not serialize access due to concurrent update"),
])
def test_transient_failures_are_retried(store, server, failure, caplog):
    store.save_job(job_row())
    server.reply_next(failure, failure)
    server.requests.clear()
    with caplog.at_level(logging.WARNING, logger="bilancio_pipeline.storage.rest"):
        store.upsert_runs([run_row(0)])
    assert len(server.requests) == 3
    assert len(server.rows("runs")) == 1
    assert len([r for r in caplog.records if "retrying" in r.getMessage()]) == 2

    server.requests.clear()
    server.reply_next(failure)
    assert len(store.list_runs("brave-otter")) == 1
    assert len(server.requests) == 2


def test_retries_stop_at_the_deadline_with_a_transient_error(server):
    store = RestStore(URL, KEY, http_client=server.client(), wait=tenacity.wait_fixed(0.02), deadline_s=0.3)
    server.reply_next(*[httpx.Response(503, text="down")] * 1000)
    with pytest.raises(StoreError) as caught:
        store.save_job(job_row())
    assert caught.value.transient is True
    # Attempts stop once the next wait would pass the deadline: at most 0.3 / 0.02 of them.
    assert 2 <= len(server.requests) <= 16
    assert f"after {len(server.requests)} attempt(s)" in str(caught.value)
    assert "HTTP 503" in str(caught.value) and str(caught.value).startswith("supabase-rest: ")


def test_inserts_of_events_are_not_repeated_after_an_ambiguous_failure(store, server):
    store.save_job(job_row())
    server.requests.clear()
    server.reply_next(httpx.Response(502, text="bad gateway"))
    with pytest.raises(StoreError) as caught:
        store.log_event("brave-otter", "started")
    assert caught.value.transient and len(server.requests) == 1
    server.reply_next(httpx.Response(503, text="unavailable"), httpx.ConnectError("refused"))
    store.log_event("brave-otter", "started")
    assert len(server.requests) == 4 and len(server.rows("job_events")) == 1


@pytest.mark.parametrize("reply, code, words", [
    (error(409, "23505", 'duplicate key value violates unique constraint "metrics_pkey"',
           details="Key (run_id)=(run-00000) already exists."), "23505", ["metrics_pkey", "already exists"]),
    (error(409, "23503", 'insert or update on table "metrics" violates foreign key constraint "metrics_run_id_fkey"',
           details='Key (run_id)=(run-00000) is not present in table "runs".'), "23503", ["metrics_run_id_fkey"]),
    (error(400, "PGRST204", "Could not find the 'delta_clean' column of 'metrics' in the schema cache"),
     "PGRST204", ["delta_clean", "migrations"]),
    (error(404, "42P01", 'relation "public.metrics" does not exist'), "42P01", ["does not exist", "migrations"]),
    (error(400, "22P02", 'invalid input syntax for type double precision: "abc"', hint="check the value"),
     "22P02", ["double precision", "hint: check the value"]),
])
def test_postgrest_errors_become_clear_store_errors(store, server, reply, code, words):
    server.reply_next(reply)
    with pytest.raises(StoreError) as caught:
        store.upsert_metrics([metric_row(0)])
    message = str(caught.value)
    assert caught.value.transient is False and not isinstance(caught.value, NotFound)
    assert f"code {code}" in message and "upsert of 1 row(s) into metrics" in message
    assert all(word in message for word in words)
    assert len(server.requests) == 1  # a refusal is not retried


def test_real_constraint_violations_from_the_server(store, server):
    with pytest.raises(StoreError, match=r"HTTP 409, code 23503.*runs_job_id_fkey"):
        store.upsert_runs([run_row(0, job_id="no-such-job")])
    store.save_job(job_row())
    store.log_events([{"job_id": "brave-otter", "event_type": "created", "id": 1}])
    with pytest.raises(StoreError, match=r"code 23505.*job_events_pkey"):
        store.log_events([{"job_id": "brave-otter", "event_type": "started", "id": 1}])


def test_wrong_key_is_refused_without_showing_it(server):
    store = RestStore(URL, "not-the-key-987654", http_client=server.client(), wait=tenacity.wait_none())
    with pytest.raises(StoreError, match="HTTP 401") as caught:
        store.get_job("x")
    assert "not-the-key-987654" not in str(caught.value)


def test_the_key_never_appears_in_errors_or_logs(server, caplog):
    store = RestStore(URL, KEY, http_client=server.client(), wait=tenacity.wait_none(), deadline_s=0.2)
    leaky = {"message": f"bad JWT {KEY}", "code": "PGRST301", "details": f"Authorization: Bearer {KEY}", "hint": None}
    failures = [
        lambda: server.reply_next(httpx.Response(401, json=leaky)),
        lambda: server.reply_next(httpx.Response(503, text=f"apikey={KEY}"), httpx.Response(400, json=leaky)),
        lambda: server.reply_next(*[httpx.ConnectError(f"failed for {KEY}")] * 200),
        lambda: server.reply_next(error(409, "23505", "duplicate key value violates unique constraint \"metrics_pkey\"")),
    ]
    texts = [repr(store)]
    with caplog.at_level(logging.DEBUG):
        for arrange in failures:
            arrange()
            with pytest.raises(StoreError) as caught:
                store.upsert_metrics([metric_row(0)])
            texts.append("".join(traceback.format_exception(caught.value)))
            server.scripted.clear()
    texts.extend(record.getMessage() for record in caplog.records)
    assert any("retrying" in t for t in texts)
    assert not [t for t in texts if KEY in t]


def test_settings_are_checked():
    with pytest.raises(ValueError, match="BILANCIO_SUPABASE_URL"):
        RestStore("project.supabase.co", KEY)
    with pytest.raises(ValueError, match="BILANCIO_SUPABASE_KEY"):
        RestStore(URL, "")
    with pytest.raises(ValueError, match="chunk_size"):
        RestStore(URL, KEY, chunk_size=0)


def test_open_store_picks_rest_from_supabase_settings():
    from bilancio_pipeline.storage.config import open_store

    store = open_store(supabase_url=URL, supabase_key=KEY)
    try:
        assert isinstance(store, RestStore) and store.backend == "supabase-rest"
    finally:
        store.close()


# --- the schema, checked over the API --------------------------------------------------------


def test_db_status_and_upgrade_over_rest_name_what_is_missing_and_what_to_run(server, monkeypatch):
    from click.testing import CliRunner

    from bilancio_pipeline.cli.main import cli
    from bilancio_pipeline.storage import migrations, rest

    monkeypatch.setattr(rest, "RestStore", lambda url, key, **kw: RestStore(url, key, http_client=server.client(), **kw))
    env = {"BILANCIO_SUPABASE_URL": URL, "BILANCIO_SUPABASE_KEY": KEY, "BILANCIO_SUPABASE_DB_URL": ""}
    newest = migrations.available()[-1]
    server.hidden_columns = set(migrations.added_columns(newest))
    assert server.hidden_columns, "the newest migration adds no column: hide another one"

    status = CliRunner().invoke(cli, ["db", "status", "--format", "json"], env=env)
    assert status.exit_code == 0, status.output
    report = json.loads(status.stdout)
    assert report["pending"] == [newest.filename]
    assert report["missing_columns"] == [f"{t}.{c}" for t, c in migrations.added_columns(newest)]
    (described,) = [r for r in server.requests if r.url.path == "/rest/v1/"]
    assert described.method == "GET" and described.headers["accept"] == "application/openapi+json"

    upgrade = CliRunner().invoke(cli, ["db", "upgrade"], env=env)
    assert upgrade.exit_code == 1
    assert "supabase db push" in upgrade.output and newest.filename in upgrade.output and KEY not in upgrade.output

    server.hidden_columns = set()
    current = CliRunner().invoke(cli, ["db", "upgrade"], env=env)
    assert current.exit_code == 0 and "nothing to do" in current.output


# --- a real Supabase project (only with credentials) ---------------------------------------


@pytest.mark.skipif(
    not (os.environ.get("BILANCIO_SUPABASE_URL") and os.environ.get("BILANCIO_SUPABASE_KEY")),
    reason="needs BILANCIO_SUPABASE_URL and BILANCIO_SUPABASE_KEY of a project with the migrations applied",
)
def test_real_supabase_smoke():
    store = RestStore(os.environ["BILANCIO_SUPABASE_URL"], os.environ["BILANCIO_SUPABASE_KEY"], deadline_s=30)
    job_id = f"smoke-test-{uuid.uuid4().hex[:10]}"
    now = datetime.now(timezone.utc).replace(microsecond=0)
    try:
        store.save_job(job_row(job_id, created_at=now, updated_at=now))
        store.upsert_runs([run_row(i, job_id, run_id=f"{job_id}-{i}") for i in range(3)])
        store.upsert_metrics([metric_row(i, job_id, run_id=f"{job_id}-{i}") for i in range(3)])
        store.log_event(job_id, "created", {"smoke": True})
        store.update_job(job_id, status="completed")
        assert store.get_job(job_id)["status"] == "completed"
        assert store.run_counts(job_id)["completed"] == 3
        assert len(store.query_results(filters.parse_filter("kappa >= 0"), job_id=job_id)) == 3
        assert [e["event_type"] for e in store.list_events(job_id)] == ["created"]
        store.delete_job(job_id)
        with pytest.raises(NotFound):
            store.get_job(job_id)
        assert store.list_runs(job_id) == []  # the runs went with the job (cascade)
    finally:
        store.delete_job(job_id)
        store.close()


# --- the same answers as the SQL store -----------------------------------------------------


def test_rows_read_back_the_same_as_from_the_sql_store(store, tmp_path):
    from bilancio_pipeline.storage.sql import SqlStore

    sql = SqlStore(f"sqlite:///{tmp_path / 'parity.db'}")
    try:
        for backend in (store, sql):
            seeded(backend, 12)
            backend.save_job(job_row("aaa-job"))  # same created_at as brave-otter: the tie-break decides
            backend.save_job(job_row("zzz-job", status="completed"))
            backend.upsert_runs([{"run_id": "run-00003", "status": "failed", "error": "boom"}])
            backend.upsert_metrics([metric_row(4, delta_total=float("nan"), raw_metrics={"x": float("inf")})])
            backend.log_events([{"job_id": "brave-otter", "event_type": "created", "details": {"n": 1}, "timestamp": T0}])
            backend.save_job_metrics({"job_id": "brave-otter", "n_comparisons": 6, "n_pairs": 6,
                                      "mean_trading_effect": 0.125, "created_at": T0})

        def same(read):
            rest_rows, sql_rows = read(store), read(sql)
            assert _without_updated_at(rest_rows) == _without_updated_at(sql_rows)
            assert _types(rest_rows) == _types(sql_rows)

        same(lambda s: s.get_job("brave-otter"))
        same(lambda s: s.list_jobs())
        same(lambda s: s.list_runs("brave-otter"))
        same(lambda s: s.get_metrics([f"run-{i:05d}" for i in range(12)]))
        same(lambda s: [{k: v for k, v in e.items() if k != "id"} for e in s.list_events("brave-otter")])
        same(lambda s: s.get_job_metrics("brave-otter"))
        same(lambda s: s.run_counts("brave-otter"))
        same(lambda s: s.completed_run_ids("brave-otter"))
        same(lambda s: s.query_results("kappa >= 0.5 or error != null", order_by="delta_total", descending=True))
        same(lambda s: s.query_results(job_id="brave-otter", regime="active", order_by="kappa", limit=4))
    finally:
        sql.close()


def _without_updated_at(value):
    if isinstance(value, list):
        return [_without_updated_at(v) for v in value]
    if isinstance(value, dict):
        return {k: v for k, v in value.items() if k != "updated_at"}
    return value


def _types(value):
    if isinstance(value, list):
        return [_types(v) for v in value]
    if isinstance(value, dict):
        return {k: type(v).__name__ for k, v in value.items()}
    return type(value).__name__
