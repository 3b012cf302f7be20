"""Artifact stores: the local volume folder and R2 (a real SeaweedFS S3 server stands in)."""

from __future__ import annotations

import gzip
import os
import socket
import stat
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from bilancio_pipeline.engine.artifacts import gzip_bytes
from bilancio_pipeline.storage.artifacts.base import ArtifactError, ArtifactStore, manifest_key, run_key, run_prefix
from bilancio_pipeline.storage.artifacts.local import LocalArtifactStore
from bilancio_pipeline.storage.artifacts.s3 import S3ArtifactStore
from bilancio_pipeline.storage.config import artifacts_from_env, open_artifacts

# One of every artifact kind a run writes, text and binary.
RUN_FILES = {
    "scenario.yaml": b"name: ring\nagents:\n  - id: F1\n    kind: firm\n",
    "out/events.jsonl": b'{"day": 0, "kind": "PayableSettled", "amount": 100}\n{"day": 1, "kind": "Default"}\n',
    "out/balances.csv": b"agent_id,amount\nF1,100\nF2,-3.5\n",
    "out/metrics.json": b'{"phi_total": 0.75, "delta_total": 0.25, "name": "r\xc3\xa9sum\xc3\xa9"}',
    "out/metrics.html": b"<!doctype html><html><body><h1>Metrics</h1></body></html>",
    "run.html": b"<html><body>run</body></html>",
    "out/state.bin": bytes(range(256)) * 4 + b"\x00\xff\x00",
}

TRAVERSAL_KEYS = ["../escape.txt", "job/../../escape.txt", "/etc/passwd", "job\\..\\x", "job//x", "job/./x", "job/", ""]


def expected_url_kind(store: ArtifactStore) -> str:
    return "file://" if store.backend == "local" else "s3://"


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStore:
    if request.param == "local":
        return LocalArtifactStore(tmp_path / "volume")
    return s3_store_for(request.getfixturevalue("s3_server"), request.getfixturevalue("s3_bucket"))


@pytest.fixture
def s3_store(s3_server, s3_bucket) -> S3ArtifactStore:
    return s3_store_for(s3_server, s3_bucket)


def s3_store_for(server, bucket: str, **options) -> S3ArtifactStore:
    options.setdefault("max_attempts", 2)
    return S3ArtifactStore(bucket, server.endpoint_url, server.access_key, server.secret_key, **options)


def write_run_folder(folder: Path) -> None:
    for name, data in RUN_FILES.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


# -- both stores ------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(RUN_FILES))
def test_every_artifact_type_round_trips(store: ArtifactStore, name: str) -> None:
    key = run_key("castle-river-mountain", "run-0001", name)
    url = store.put_bytes(key, RUN_FILES[name])

    assert store.get_bytes(key) == RUN_FILES[name]
    assert url.startswith(expected_url_kind(store)) and url.endswith(key)
    assert store.list_keys("castle-river-mountain") == [key]


def test_put_replaces_an_existing_object(store: ArtifactStore) -> None:
    key = manifest_key("job-a")
    store.put_bytes(key, b'{"version": 1}')
    store.put_bytes(key, b'{"version": 2, "longer": true}')

    assert store.get_bytes(key) == b'{"version": 2, "longer": true}'
    assert store.list_keys("job-a") == [key]


def test_upload_run_then_download_prefix_reproduces_the_folder(store: ArtifactStore, tmp_path: Path) -> None:
    source = tmp_path / "run-out"
    write_run_folder(source)

    urls = store.upload_run("job-a", "run-7", source)

    assert set(urls) == set(RUN_FILES)
    assert all(url.startswith(expected_url_kind(store)) for url in urls.values())
    assert store.list_keys(run_prefix("job-a", "run-7")) == sorted(run_key("job-a", "run-7", n) for n in RUN_FILES)

    dest = tmp_path / "downloaded"
    written = store.download_prefix(run_prefix("job-a", "run-7"), dest)

    assert sorted(p.relative_to(dest).as_posix() for p in written) == sorted(RUN_FILES)
    for name, data in RUN_FILES.items():
        assert (dest / name).read_bytes() == data



def test_move_run_stores_the_folder_and_a_rerun_replaces_it(store: ArtifactStore, tmp_path: Path) -> None:
    first = tmp_path / "first"
    write_run_folder(first)
    urls = store.move_run("job-a", "run-7", first)

    assert set(urls) == set(RUN_FILES)
    for name, url in urls.items():
        assert url.startswith(expected_url_kind(store)) and url.endswith(run_key("job-a", "run-7", name))
        assert store.get_bytes(run_key("job-a", "run-7", name)) == RUN_FILES[name]

    # The run again (a retry): the folder now exists, and every file is replaced, none added.
    second = tmp_path / "second"
    write_run_folder(second)
    (second / "out/metrics.json").write_bytes(b'{"phi_total": 1.0}')
    assert store.move_run("job-a", "run-7", second) == urls
    assert store.get_bytes(run_key("job-a", "run-7", "out/metrics.json")) == b'{"phi_total": 1.0}'
    assert store.list_keys(run_prefix("job-a", "run-7")) == sorted(run_key("job-a", "run-7", n) for n in RUN_FILES)


def test_missing_object_is_an_artifact_error_naming_backend_and_key(store: ArtifactStore) -> None:
    store.put_bytes("job-a/present.json", b"{}")
    with pytest.raises(ArtifactError) as raised:
        store.get_bytes("job-a/absent.json")
    message = str(raised.value)
    assert message.startswith(f"{store.backend}:")
    assert "job-a/absent.json" in message


def test_listing_and_deleting_touch_exactly_the_prefix(store: ArtifactStore) -> None:
    # "job-a" is a string prefix of "job-ab": a prefix means a folder, so job-ab must survive.
    layout = {
        run_key("job-a", "r1", "out/events.jsonl"): b"1\n",
        run_key("job-a", "r1", "scenario.yaml"): b"a: 1\n",
        run_key("job-a", "r2", "out/events.jsonl"): b"22\n",
        manifest_key("job-a"): b"{}",
        run_key("job-ab", "r1", "out/events.jsonl"): b"333\n",
        manifest_key("job-b"): b"[]",
    }
    for key, data in layout.items():
        store.put_bytes(key, data)
    job_a = sorted(k for k in layout if k.startswith("job-a/"))

    assert store.list_keys("job-a") == job_a
    assert store.list_keys("job-a/") == job_a
    assert store.list_keys("") == sorted(layout)
    assert store.list_keys("job-a/runs/r1") == [
        run_key("job-a", "r1", "out/events.jsonl"),
        run_key("job-a", "r1", "scenario.yaml"),
    ]
    assert store.list_keys("job-c") == []

    assert store.delete_prefix(run_prefix("job-a", "r1")) == 2
    assert store.list_keys("job-a") == [manifest_key("job-a"), run_key("job-a", "r2", "out/events.jsonl")]

    assert store.delete_prefix("job-a") == 2
    assert store.list_keys("") == sorted([run_key("job-ab", "r1", "out/events.jsonl"), manifest_key("job-b")])
    assert store.get_bytes(manifest_key("job-b")) == b"[]"
    assert store.delete_prefix("job-a") == 0


def test_delete_refuses_the_empty_prefix(store: ArtifactStore) -> None:
    store.put_bytes("job-a/x.json", b"{}")
    with pytest.raises(ArtifactError, match="empty prefix"):
        store.delete_prefix("")
    assert store.list_keys("") == ["job-a/x.json"]


def test_list_jobs_reports_counts_bytes_and_an_aware_utc_time(store: ArtifactStore) -> None:
    before = datetime.now(timezone.utc)
    store.put_bytes(manifest_key("job-a"), b"12345")
    store.put_bytes(run_key("job-a", "r1", "out/events.jsonl"), b"123")
    store.put_bytes(manifest_key("job-b"), b"1")
    after = datetime.now(timezone.utc)

    jobs = {job.job_id: job for job in store.list_jobs()}

    assert set(jobs) == {"job-a", "job-b"}
    assert (jobs["job-a"].n_objects, jobs["job-a"].total_bytes) == (2, 8)
    assert (jobs["job-b"].n_objects, jobs["job-b"].total_bytes) == (1, 1)
    for job in jobs.values():
        assert job.last_modified.utcoffset() == timedelta(0)
        # S3 keeps whole seconds; allow for that and a little clock skew.
        assert before - timedelta(seconds=2) <= job.last_modified <= after + timedelta(seconds=2)

    store.delete_prefix("job-b")
    assert [job.job_id for job in store.list_jobs()] == ["job-a"]


@pytest.mark.parametrize("key", TRAVERSAL_KEYS)
def test_unsafe_keys_are_rejected_before_anything_is_written(store: ArtifactStore, tmp_path: Path, key: str) -> None:
    before = sorted(p for p in tmp_path.rglob("*"))
    with pytest.raises(ArtifactError) as raised:
        store.put_bytes(key, b"nope")
    assert repr(key) in str(raised.value)
    with pytest.raises(ArtifactError):
        store.get_bytes(key)
    assert sorted(p for p in tmp_path.rglob("*")) == before
    assert not (tmp_path.parent / "escape.txt").exists()
    assert store.list_keys("") == []


def test_compressed_run_files_are_stored_compressed_and_read_back_plain(store: ArtifactStore, tmp_path: Path) -> None:
    """A run folder's `<name>.gz` files (engine/artifacts.py) keep their plain names in every
    listing and read, download and link; only the bytes kept are compressed."""
    plain = {name: data * 50 for name, data in RUN_FILES.items() if name.endswith((".jsonl", ".csv", ".yaml"))}
    for mover in ("upload_run", "move_run"):
        source = tmp_path / mover
        write_run_folder(source)
        for name, data in plain.items():
            (source / name).unlink()
            (source / f"{name}.gz").write_bytes(gzip_bytes(data))
        urls = getattr(store, mover)("job-z", mover, source)

        keys = sorted(run_key("job-z", mover, n) for n in RUN_FILES)
        assert set(urls) == set(RUN_FILES) and store.list_keys(run_prefix("job-z", mover)) == keys
        for name, data in {**RUN_FILES, **plain}.items():
            assert store.get_bytes(run_key("job-z", mover, name)) == data, name
        dest = tmp_path / f"{mover}-downloaded"
        store.download_prefix(run_prefix("job-z", mover), dest)
        assert {p.relative_to(dest).as_posix(): p.read_bytes() for p in dest.rglob("*") if p.is_file()} == {**RUN_FILES, **plain}

        link = store.signed_url(run_key("job-z", mover, "out/events.jsonl"), expires_seconds=60)
        with urllib.request.urlopen(link, timeout=10) as response:  # urllib does not decode gzip; a browser does
            assert gzip.decompress(response.read()) == plain["out/events.jsonl"]
            if store.backend == "r2":
                assert response.headers["Content-Encoding"] == "gzip"
                assert response.headers["Content-Type"] == "application/x-ndjson"
    used = sum(job.total_bytes for job in store.list_jobs())
    assert used < 2 * sum(len(d) for d in RUN_FILES.values()) + sum(len(d) for d in plain.values()) / 4


def test_signed_url_downloads_the_bytes(store: ArtifactStore) -> None:
    key = run_key("job-a", "r1", "out/state.bin")
    store.put_bytes(key, RUN_FILES["out/state.bin"])

    url = store.signed_url(key, expires_seconds=60)

    assert fetch(url) == RUN_FILES["out/state.bin"]


# -- local volume only ------------------------------------------------------------------


def test_local_writes_land_under_the_root_atomically(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "volume")
    url = store.put_bytes("job-a/runs/r1/out/events.jsonl", b"{}\n")

    path = tmp_path / "volume" / "job-a" / "runs" / "r1" / "out" / "events.jsonl"
    assert url == path.as_uri()
    assert path.read_bytes() == b"{}\n"
    assert store.signed_url("job-a/runs/r1/out/events.jsonl") == path.as_uri()
    # no temporary file is left next to the artifact, and the umask decides its mode as usual
    assert sorted(p.name for p in path.parent.iterdir()) == ["events.jsonl"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_local_failed_write_keeps_the_old_file_and_leaves_no_debris(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    store.put_bytes("job-a/metrics.json", b'{"ok": true}')

    with pytest.raises(TypeError):
        store.put_bytes("job-a/metrics.json", "not bytes")  # fails halfway, after the temp file exists

    assert store.get_bytes("job-a/metrics.json") == b'{"ok": true}'
    assert sorted(p.name for p in (tmp_path / "job-a").iterdir()) == ["metrics.json"]
    with pytest.raises(ArtifactError, match="reserved"):
        store.put_bytes("job-a/x.partial", b"")


def test_local_listing_ignores_half_written_files(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    store.put_bytes("job-a/done.json", b"{}")
    (tmp_path / "job-a" / ".late.json.x1y2.partial").write_bytes(b"{")  # a writer that crashed

    assert store.list_keys("job-a") == ["job-a/done.json"]
    assert store.list_jobs()[0].n_objects == 1


def test_local_list_jobs_takes_the_newest_file_time(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    store.put_bytes("job-a/old.json", b"{}")
    store.put_bytes("job-a/runs/r1/new.json", b"{}")
    old, new = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc), datetime(2026, 5, 6, 7, 8, 9, tzinfo=timezone.utc)
    os.utime(tmp_path / "job-a" / "old.json", (old.timestamp(), old.timestamp()))
    os.utime(tmp_path / "job-a" / "runs" / "r1" / "new.json", (new.timestamp(), new.timestamp()))

    (job,) = store.list_jobs()
    assert job.last_modified == new


def test_local_delete_removes_emptied_folders_only(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    store.put_bytes("job-a/runs/r1/out/events.jsonl", b"1")
    store.put_bytes("job-a/runs/r2/out/events.jsonl", b"2")

    store.delete_prefix("job-a/runs/r1")

    assert not (tmp_path / "job-a" / "runs" / "r1").exists()
    assert (tmp_path / "job-a" / "runs" / "r2" / "out" / "events.jsonl").read_bytes() == b"2"
    store.delete_prefix("job-a")
    assert list(tmp_path.iterdir()) == []


def test_local_refuses_a_symlink_leading_outside_the_volume(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    store = LocalArtifactStore(tmp_path / "volume")
    (tmp_path / "volume").mkdir()
    (tmp_path / "volume" / "job-a").symlink_to(outside)

    with pytest.raises(ArtifactError, match="outside the volume"):
        store.put_bytes("job-a/x.json", b"{}")
    assert list(outside.iterdir()) == []


def test_local_store_on_a_missing_folder_lists_nothing(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "never-created")
    assert store.list_keys("") == []
    assert store.list_jobs() == []
    assert store.delete_prefix("job-a") == 0


# -- R2 (S3) only -----------------------------------------------------------------------

@pytest.mark.s3
def test_s3_objects_carry_a_content_type_by_extension(s3_store: S3ArtifactStore) -> None:
    expected = {
        "j/a.yaml": "application/yaml",
        "j/a.jsonl": "application/x-ndjson",
        "j/a.json": "application/json",
        "j/a.csv": "text/csv; charset=utf-8",
        "j/a.html": "text/html; charset=utf-8",
        "j/a.bin": "application/octet-stream",
    }
    for key in expected:
        s3_store.put_bytes(key, b"x")
    stored = {key: s3_store.client.head_object(Bucket=s3_store.bucket, Key=key)["ContentType"] for key in expected}
    assert stored == expected


@pytest.mark.s3
def test_s3_uploads_send_no_default_streaming_checksum(s3_store: S3ArtifactStore) -> None:
    # R2 rejects boto3's default CRC32 aws-chunked trailer; the client must not send one.
    sent_headers = []
    s3_store.client.meta.events.register(
        "before-send.s3.PutObject", lambda request, **_: sent_headers.append(dict(request.headers))
    )
    s3_store.put_bytes("job-a/x.csv", b"a,b\n1,2\n")

    (headers,) = sent_headers
    lowered = {name.lower(): value for name, value in headers.items()}
    assert not [name for name in lowered if name.startswith("x-amz-checksum") or name == "x-amz-trailer"]
    assert "aws-chunked" not in str(lowered.get("content-encoding", ""))
    assert "AWS4-HMAC-SHA256" in str(lowered["authorization"])  # SigV4


@pytest.mark.s3
def test_s3_listing_follows_pages_and_deletes_in_batches(s3_store: S3ArtifactStore) -> None:
    s3_store.list_page_size = 2
    s3_store.delete_batch_size = 2
    keys = sorted(f"job-a/runs/r{i}/out/metrics.json" for i in range(5))
    for key in keys:
        s3_store.put_bytes(key, b"{}")
    s3_store.put_bytes("job-b/x.json", b"{}")
    list_calls, delete_calls = [], []
    s3_store.client.meta.events.register("before-parameter-build.s3.ListObjectsV2", lambda **kw: list_calls.append(1))
    s3_store.client.meta.events.register(
        "before-parameter-build.s3.DeleteObjects",
        lambda params, **_: delete_calls.append(len(params["Delete"]["Objects"])),
    )

    assert s3_store.list_keys("job-a") == keys
    assert len(list_calls) == 3  # 2 + 2 + 1

    assert s3_store.delete_prefix("job-a") == 5
    assert delete_calls == [2, 2, 1]
    assert s3_store.list_keys("") == ["job-b/x.json"]


@pytest.mark.s3
def test_s3_store_prefix_keeps_its_objects_apart(s3_server, s3_bucket) -> None:
    team = s3_store_for(s3_server, s3_bucket, prefix="team-a")
    whole = s3_store_for(s3_server, s3_bucket)
    whole.put_bytes("job-z/x.json", b"z")

    url = team.put_bytes("job-a/x.json", b"a")

    assert url == f"s3://{s3_bucket}/team-a/job-a/x.json"
    assert team.list_keys("") == ["job-a/x.json"]
    assert [job.job_id for job in team.list_jobs()] == ["job-a"]
    assert whole.get_bytes("team-a/job-a/x.json") == b"a"
    assert team.delete_prefix("job-a") == 1
    assert whole.list_keys("") == ["job-z/x.json"]


@pytest.mark.s3
def test_s3_tampered_signed_urls_are_refused(s3_store: S3ArtifactStore) -> None:
    s3_store.put_bytes("job-a/secret.csv", b"a,b\n")
    s3_store.put_bytes("job-a/other.csv", b"c,d\n")
    url = s3_store.signed_url("job-a/secret.csv", expires_seconds=60)
    assert fetch(url) == b"a,b\n"

    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qs(parts.query)
    signature = query["X-Amz-Signature"][0]
    flipped = ("0" if signature[0] != "0" else "1") + signature[1:]
    bad_signature = url.replace(f"X-Amz-Signature={signature}", f"X-Amz-Signature={flipped}")
    other_key = url.replace("/job-a/secret.csv?", "/job-a/other.csv?")
    longer_life = url.replace("X-Amz-Expires=60", "X-Amz-Expires=6000")

    assert bad_signature != url and other_key != url and longer_life != url
    assert http_status(bad_signature) == 403
    assert http_status(other_key) == 403  # the object exists: refused for the signature, not 404
    assert http_status(longer_life) == 403


@pytest.mark.s3
def test_s3_signed_url_expires(s3_store: S3ArtifactStore) -> None:
    s3_store.put_bytes("job-a/x.json", b"{}")
    short = s3_store.signed_url("job-a/x.json", expires_seconds=1)
    long = s3_store.signed_url("job-a/x.json", expires_seconds=60)
    time.sleep(2.2)

    assert http_status(short) == 403
    assert fetch(long) == b"{}"  # signed at the same moment: only the lifetime differs


@pytest.mark.s3
def test_s3_signed_url_lifetime_is_checked(s3_store: S3ArtifactStore) -> None:
    for bad in (0, -5, 7 * 24 * 3600 + 1, 1.5):
        with pytest.raises(ValueError, match="expires_seconds"):
            s3_store.signed_url("job-a/x.json", expires_seconds=bad)


def _full_error_text(error: BaseException) -> str:
    return "".join(traceback.format_exception(error)) + repr(error)


@pytest.mark.s3
def test_s3_errors_name_backend_bucket_and_key_but_never_the_secret(s3_server, s3_bucket) -> None:
    wrong_secret = "wrong-" + s3_server.secret_key[::-1]
    bad = S3ArtifactStore(s3_bucket, s3_server.endpoint_url, s3_server.access_key, wrong_secret, max_attempts=1)

    with pytest.raises(ArtifactError) as raised:
        bad.put_bytes("job-a/x.json", b"{}")

    message = str(raised.value)
    assert message.startswith("r2:")
    assert f"s3://{s3_bucket}/job-a/x.json" in message
    assert "403" in message
    full = _full_error_text(raised.value)
    assert wrong_secret not in full and s3_server.secret_key not in full
    assert wrong_secret not in repr(bad)


@pytest.mark.s3
def test_s3_missing_bucket_and_unreachable_server_are_artifact_errors(s3_server) -> None:
    missing = s3_store_for(s3_server, "no-such-bucket-here", max_attempts=1)
    with pytest.raises(ArtifactError, match=r"^r2: .*s3://no-such-bucket-here/job-a"):
        missing.list_keys("job-a")

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    secret = s3_server.secret_key
    down = S3ArtifactStore("some-bucket", f"http://127.0.0.1:{port}", s3_server.access_key, secret, max_attempts=1)
    with pytest.raises(ArtifactError) as raised:
        down.get_bytes("job-a/x.json")
    assert str(raised.value).startswith("r2: could not download s3://some-bucket/job-a/x.json")
    assert secret not in _full_error_text(raised.value)


def test_missing_weed_binary_fails_with_the_install_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from bilancio_pipeline_tests.fixtures import s3 as s3_fixtures

    monkeypatch.setattr(s3_fixtures.sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(pytest.fail.Exception, match=r"bash \.ci/install --test"):
        s3_fixtures.find_weed()


@pytest.mark.parametrize(
    "field, kwargs",
    [
        ("bucket", {"bucket": ""}),
        ("endpoint_url", {"endpoint_url": None}),
        ("endpoint_url", {"endpoint_url": "r2.example.com"}),
        ("access_key_id", {"access_key_id": None}),
        ("secret_access_key", {"secret_access_key": ""}),
    ],
)
def test_s3_store_settings_are_checked_up_front(field: str, kwargs: dict) -> None:
    settings = {
        "bucket": "b",
        "endpoint_url": "https://acct.r2.cloudflarestorage.com",
        "access_key_id": "id",
        "secret_access_key": "s3cr3t",
    }
    with pytest.raises(ValueError, match=field) as raised:
        S3ArtifactStore(**{**settings, **kwargs})
    assert "s3cr3t" not in str(raised.value)


# -- choosing the store from the environment --------------------------------------------

R2_ENV = (
    "BILANCIO_R2_BUCKET",
    "BILANCIO_R2_ENDPOINT_URL",
    "BILANCIO_R2_ACCOUNT_ID",
    "BILANCIO_R2_ACCESS_KEY_ID",
    "BILANCIO_R2_SECRET_ACCESS_KEY",
)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for name in R2_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BILANCIO_HOME", str(tmp_path / "home"))
    return monkeypatch


@pytest.mark.s3
def test_r2_settings_in_the_environment_select_the_bucket(clean_env, s3_server, s3_bucket) -> None:
    clean_env.setenv("BILANCIO_R2_BUCKET", s3_bucket)
    clean_env.setenv("BILANCIO_R2_ENDPOINT_URL", s3_server.endpoint_url)
    clean_env.setenv("BILANCIO_R2_ACCESS_KEY_ID", s3_server.access_key)
    clean_env.setenv("BILANCIO_R2_SECRET_ACCESS_KEY", s3_server.secret_key)

    store = artifacts_from_env()

    assert isinstance(store, S3ArtifactStore) and store.backend == "r2"
    assert store.put_bytes("job-a/x.json", b"{}") == f"s3://{s3_bucket}/job-a/x.json"
    # it really went to the server, not to a local folder
    raw = s3_server.client().get_object(Bucket=s3_bucket, Key="job-a/x.json")["Body"].read()
    assert raw == b"{}"


def test_no_r2_settings_select_the_local_volume(clean_env, tmp_path: Path) -> None:
    store = artifacts_from_env()

    assert isinstance(store, LocalArtifactStore) and store.backend == "local"
    assert store.root == (tmp_path / "home" / "volume").resolve()
    store.put_bytes("job-a/x.json", b"{}")
    assert (tmp_path / "home" / "volume" / "job-a" / "x.json").read_bytes() == b"{}"


def test_account_id_builds_the_r2_endpoint(clean_env) -> None:
    store = open_artifacts(bucket="b", account_id="abc123", access_key_id="id", secret_access_key="s")
    assert isinstance(store, S3ArtifactStore)
    assert store.endpoint_url == "https://abc123.r2.cloudflarestorage.com"


def test_a_bucket_without_endpoint_is_a_clear_error(clean_env) -> None:
    clean_env.setenv("BILANCIO_R2_BUCKET", "b")
    with pytest.raises(ValueError, match="BILANCIO_R2_ENDPOINT_URL"):
        artifacts_from_env()


# -- a sweep's artifact policy, from the job row to the volume --------------------------------


@pytest.mark.parametrize(("policy", "expected"), [
    ("all", {"run.html", "out/metrics.html", "scenario.yaml", "out/events.jsonl", "out/balances.csv"}),
    ("summary", {"run.html", "out/metrics.html", "scenario.yaml", "out/balances.csv"}),
    ("none", set()),
])
def test_a_sweeps_artifact_policy_decides_what_reaches_the_volume(tmp_path: Path, policy: str, expected: set) -> None:
    from bilancio_pipeline.compute.local import LocalCompute
    from bilancio_pipeline.storage.sql import SqlStore
    from bilancio_pipeline.sweeps import lifecycle
    from bilancio_pipeline.sweeps.batch import run_batch
    from bilancio_pipeline.sweeps.spec import SweepSpec, expand, validate

    spec = validate(SweepSpec(n_agents=8, kappas=(0.5,), job_id=f"policy-{policy}", artifact_policy=policy))
    default = validate(SweepSpec(n_agents=8, kappas=(0.5,), job_id=spec.job_id))
    assert [r.run_id for r in expand(spec)] == [r.run_id for r in expand(default)]  # not a run parameter
    volume = LocalArtifactStore(tmp_path / "volume")
    with SqlStore(f"sqlite:///{tmp_path / 'bilancio.db'}") as db:
        run_ids = lifecycle.register_sweep(db, spec, expand(spec))
        assert db.get_job(spec.job_id)["artifact_policy"] == policy
        result = run_batch(db, volume, LocalCompute(workers=1), run_ids)
    assert sorted(result.completed) == sorted(run_ids) and not result.missing_artifacts
    for run_id in run_ids:
        names = {key.split(f"{run_id}/", 1)[1] for key in volume.list_keys(run_prefix(spec.job_id, run_id))}
        assert expected <= names and ("out/events.jsonl" in names) == (policy == "all")
        assert bool(names) == (policy != "none")
