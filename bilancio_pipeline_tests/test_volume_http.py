"""The results volume over http: what the UI's links open on the embedded default."""

import gzip
import os
import socket

import httpx
import pytest

from bilancio_pipeline.benchmarks.pg_server import free_port
from bilancio_pipeline.storage.artifacts.local import LocalArtifactStore
from bilancio_pipeline.volume_http import VolumeServer, browser_url, start_beside_ui


@pytest.fixture
def served(tmp_path, monkeypatch):
    volume = LocalArtifactStore(tmp_path / "volume")
    server = VolumeServer(volume, free_port()).start()
    monkeypatch.setenv("BILANCIO_VOLUME_URL", server.url)
    try:
        yield volume, server
    finally:
        server.stop()


def test_links_open_files_plain_even_when_kept_compressed(served, tmp_path):
    volume, server = served
    volume.put_bytes("job/report.html", b"<h1>Sweep job</h1>")
    volume.put_compressed("job/runs/r1/out/events.jsonl", gzip.compress(b'{"kind": "CashMinted"}\n'))
    assert (tmp_path / "volume/job/runs/r1/out/events.jsonl.gz").exists()

    report = httpx.get(browser_url(volume, "job/report.html"))
    assert report.status_code == 200 and report.text == "<h1>Sweep job</h1>"
    assert report.headers["content-type"].startswith("text/html")
    events = httpx.get(browser_url(volume, "job/runs/r1/out/events.jsonl"))
    assert events.text == '{"kind": "CashMinted"}\n' and events.headers["content-type"].startswith("text/plain")
    listing = httpx.get(f"{server.url}/job/runs/r1/")
    assert listing.status_code == 200 and "out/" in listing.text


def test_only_the_volume_is_served_and_nothing_can_be_written(served, tmp_path):
    volume, server = served
    (tmp_path / "secret.txt").write_text("not in the volume")
    volume.put_bytes("job/report.html", b"report")
    for path in ("/../secret.txt", "/%2e%2e/secret.txt", "/job/../../secret.txt", "/job/missing.html"):
        response = httpx.get(server.url + path)
        assert response.status_code == 404 and "not in the volume" not in response.text, path
    assert httpx.put(f"{server.url}/job/new.html", content=b"x").status_code == 501
    assert httpx.get(f"{server.url}/").status_code == 200
    assert server.url.startswith("http://127.0.0.1:")


def test_ui_serves_the_volume_on_a_free_port_when_the_next_one_is_taken(tmp_path, monkeypatch):
    """`ui` serves the volume on the port after its own; when something holds that port (here an
    open connection whose local port it is), the links point at the free port it served instead."""
    monkeypatch.setenv("BILANCIO_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("BILANCIO_VOLUME_URL", raising=False)  # restored after the test: ui sets it
    LocalArtifactStore(tmp_path / "home" / "volume").put_bytes("job/report.html", b"<h1>Sweep job</h1>")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        with socket.create_connection(listener.getsockname()) as client:
            taken = client.getsockname()[1]  # held by this connection: no server can bind it
            child = start_beside_ui(taken - 1)
            try:
                url = os.environ["BILANCIO_VOLUME_URL"]
                assert url.startswith("http://127.0.0.1:") and not url.endswith(f":{taken}")
                # The port listens from the start; the answer comes once the child serves it.
                report = httpx.get(f"{url}/job/report.html", timeout=60)
                assert report.status_code == 200 and report.text == "<h1>Sweep job</h1>"
            finally:
                child.terminate()
                child.wait(10)
