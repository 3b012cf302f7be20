"""The results volume over http: what the UI's links open on the embedded default."""

import gzip

import httpx
import pytest

from bilancio_pipeline.benchmarks.pg_server import free_port
from bilancio_pipeline.storage.artifacts.local import LocalArtifactStore
from bilancio_pipeline.volume_http import VolumeServer, browser_url


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
