"""The completion webhook against a real HTTP server on 127.0.0.1: the payload, retries with
backoff, a receiver that hangs does not hold up the sweep, and the URL's token never reaches a log."""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bilancio_pipeline.storage.sql import SqlStore
from bilancio_pipeline.sweeps import lifecycle, webhook
from bilancio_pipeline.sweeps.spec import SweepSpec, expand, validate

TOKEN = "T0KEN-abcdef-123456"


class Receiver:
    """An HTTP server that answers each POST with the next status of `statuses` (then 204),
    optionally waiting for `release` first."""

    def __init__(self, statuses=(), hold=False):
        self.bodies, self.statuses = [], list(statuses)
        self.release = threading.Event()
        if not hold:
            self.release.set()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["content-length"]))
                receiver.release.wait(10)
                status = receiver.statuses.pop(0) if receiver.statuses else 204
                if status < 300:
                    receiver.bodies.append((self.headers["content-type"], json.loads(body)))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/{TOKEN}"

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def store(tmp_path):
    store = SqlStore(f"sqlite:///{tmp_path / 'bilancio.db'}")
    spec = validate(SweepSpec(job_id="hook-test", sweep_type="ring", n_agents=5, maturity_days=3, kappas=(1.0,), seeds=(1, 2)))
    run_ids = lifecycle.register_sweep(store, spec, expand(spec))
    store.upsert_runs([{"run_id": r, "job_id": "hook-test", "status": "completed"} for r in run_ids])
    yield store
    store.close()


@pytest.fixture
def fast_retries(monkeypatch):
    original = webhook.post
    monkeypatch.setattr(webhook, "post", lambda url, payload: original(url, payload, wait_initial=0.01, wait_max=0.05))


def test_a_finished_sweep_posts_its_status_counts_and_metrics_after_retries(store, monkeypatch, fast_retries, caplog):
    receiver = Receiver(statuses=[503, 500])
    monkeypatch.setenv(webhook.ENV, receiver.url)
    caplog.set_level(logging.DEBUG)
    try:
        status = lifecycle.finish_job(store, "hook-test", {"job_id": "hook-test", "n_pairs": 0, "mean_trading_effect": None})
        webhook.wait(20)
    finally:
        receiver.close()
    assert status == "completed"
    assert receiver.bodies == [("application/json", {
        "job_id": "hook-test", "status": "completed", "counts": {"pending": 0, "running": 0, "completed": 2, "failed": 0, "cancelled": 0},
        "job_metrics": {"job_id": "hook-test", "n_pairs": 0, "mean_trading_effect": None}})]
    assert "delivered" in caplog.text and TOKEN not in caplog.text


def test_a_hanging_receiver_does_not_hold_up_the_sweep(store, monkeypatch):
    receiver = Receiver(hold=True)  # answers only once released
    monkeypatch.setenv(webhook.ENV, receiver.url)
    try:
        lifecycle.fail_job(store, "hook-test", "the aggregate failed")
        # fail_job has returned and the job row is written while the POST is still waiting
        assert store.get_job("hook-test")["status"] == "failed" and receiver.bodies == []
        receiver.release.set()
        webhook.wait(20)
    finally:
        receiver.close()
    assert receiver.bodies[0][1]["status"] == "failed" and receiver.bodies[0][1]["counts"]["completed"] == 2


def test_an_unreachable_receiver_is_logged_without_the_url_and_raises_nothing(store, monkeypatch, fast_retries, caplog):
    receiver = Receiver()
    url = receiver.url
    receiver.close()  # nothing listens there any more
    monkeypatch.setenv(webhook.ENV, url)
    caplog.set_level(logging.DEBUG)
    assert lifecycle.finish_job(store, "hook-test", None) == "completed"
    webhook.wait(20)
    assert "not delivered after retries" in caplog.text
    assert TOKEN not in caplog.text and "127.0.0.1/…" in caplog.text


def test_a_refusal_is_not_retried(monkeypatch, fast_retries):
    receiver = Receiver(statuses=[404])
    try:
        with pytest.raises(Exception, match="404"):
            webhook.post(receiver.url, {"job_id": "x"})
    finally:
        receiver.close()
    assert receiver.statuses == [] and receiver.bodies == []


def test_no_url_no_thread(store, monkeypatch):
    monkeypatch.delenv(webhook.ENV, raising=False)
    assert webhook.notify("hook-test", "completed", {}, None) is None
