"""The results volume in the browser: links the Dagster UI can open, and the small file server
behind them on the embedded default.

A browser refuses `file://` links from a web page, so on the local volume `bilancio-pipeline ui`
starts `VolumeServer` beside `dagster dev`: read-only, on 127.0.0.1, serving only the volume's
keys (through `LocalArtifactStore`, so a file kept as `<name>.gz` is served as `<name>`). The
links written into Dagster metadata point at it (`BILANCIO_VOLUME_URL`, default
http://127.0.0.1:3001). On R2 a link is a presigned URL valid for the longest time S3 allows,
7 days: a link minted when the asset was materialized stops working after that, so re-materialize
`sweep_report` (or use `bilancio-pipeline artifacts url`) to get a fresh one.
"""

from __future__ import annotations

import argparse
import html
import mimetypes
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote, unquote, urlsplit

from bilancio_pipeline.storage.artifacts.base import ArtifactError, ArtifactStore

DEFAULT_PORT = 3001
PRESIGNED_SECONDS = 7 * 24 * 3600  # the longest an S3 presigned URL may live
_SHOWN_AS_TEXT = (".jsonl", ".csv", ".yaml")


def volume_url_base() -> str:
    return os.environ.get("BILANCIO_VOLUME_URL", f"http://127.0.0.1:{DEFAULT_PORT}").rstrip("/")


def browser_url(volume: ArtifactStore, key: str) -> str:
    """A link to one stored object that a browser opens from the Dagster UI."""
    if volume.backend == "local":
        return f"{volume_url_base()}/{quote(key)}"
    return volume.signed_url(key, PRESIGNED_SECONDS)


class _Handler(BaseHTTPRequestHandler):
    volume: ArtifactStore  # set on the subclass made by VolumeServer

    def do_GET(self):  # noqa: N802 (the http.server protocol)
        self._answer(body=True)

    def do_HEAD(self):  # noqa: N802
        self._answer(body=False)

    def _answer(self, body: bool) -> None:
        key = unquote(urlsplit(self.path).path).strip("/")
        try:
            data, content_type = self._read(key)
        except (ArtifactError, ValueError, OSError):
            data, content_type = None, None
        if data is None:
            self.send_error(404, "not in the results volume")
            return
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        if body:
            self.wfile.write(data)

    def _read(self, key: str) -> tuple[bytes | None, str | None]:
        if key and not key.endswith("/") and "." in key.rsplit("/", 1)[-1]:
            return self.volume.get_bytes(key), _content_type(key)
        keys = self.volume.list_keys(f"{key}/" if key else "")
        if not keys and key:
            return None, None
        return _index(key, keys).encode(), "text/html; charset=utf-8"

    def log_message(self, format, *args):  # a quiet console: the UI's log is the place to look
        pass


def _content_type(key: str) -> str:
    """Data files as text, so the browser shows them instead of downloading them."""
    if key.endswith(_SHOWN_AS_TEXT):
        return "text/plain; charset=utf-8"
    guessed = mimetypes.guess_type(key)[0] or "application/octet-stream"
    return f"{guessed}; charset=utf-8" if guessed.startswith("text/") or guessed == "application/json" else guessed


def _index(prefix: str, keys: list[str]) -> str:
    """A folder's listing: its files and sub-folders, one link each."""
    start = len(prefix) + 1 if prefix else 0
    entries = sorted({k[start:].split("/", 1)[0] + ("/" if "/" in k[start:] else "") for k in keys})
    items = "".join(f'<li><a href="/{quote(prefix + "/" if prefix else "")}{quote(e)}">{html.escape(e)}</a></li>'
                    for e in entries)
    return f"<!doctype html><title>{html.escape(prefix or 'volume')}</title><h1>{html.escape(prefix or 'volume')}</h1><ul>{items}</ul>"


class VolumeServer:
    """`VolumeServer(volume, port).start()`: serve the volume read-only on 127.0.0.1 in a thread."""

    def __init__(self, volume: ArtifactStore, port: int = DEFAULT_PORT, host: str = "127.0.0.1",
                 listener: socket.socket | None = None):
        handler = type("VolumeHandler", (_Handler,), {"volume": volume})
        if listener is None:
            self.httpd = ThreadingHTTPServer((host, port), handler)
        else:  # a socket already bound and listening (start_beside_ui reserved it)
            self.httpd = ThreadingHTTPServer(listener.getsockname(), handler, bind_and_activate=False)
            self.httpd.socket.close()
            self.httpd.socket = listener
        self.httpd.daemon_threads = True

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> VolumeServer:
        threading.Thread(target=self.httpd.serve_forever, name="volume-http", daemon=True).start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def start_beside_ui(ui_port: int) -> subprocess.Popen | None:
    """For `bilancio-pipeline ui`: serve the local volume on the next port in a child process that
    ends when this process (or the `dagster dev` it becomes) ends; point the links at it.
    Returns None on R2, whose links are presigned."""
    from bilancio_pipeline.storage.config import artifacts_from_env

    volume = artifacts_from_env()
    if volume.backend != "local":
        return None
    listener = _listen(ui_port + 1)
    os.environ["BILANCIO_VOLUME_URL"] = f"http://127.0.0.1:{listener.getsockname()[1]}"  # for dagster dev's runs
    with listener:  # the child serves on this very socket: nothing can take the port in between
        return subprocess.Popen([sys.executable, "-m", "bilancio_pipeline.volume_http",
                                 "--fd", str(listener.fileno()), "--parent", str(os.getpid())],
                                pass_fds=[listener.fileno()])


def _listen(port: int) -> socket.socket:
    """A socket listening on 127.0.0.1:port, or on a free port when that one is taken: by another
    server, or by an outgoing connection (on Linux those take even ports, and a kernel-chosen
    UI port is odd, so its next port is one of theirs)."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(("127.0.0.1", port))
    except OSError:
        listener.bind(("127.0.0.1", 0))
    listener.listen()
    return listener


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve the local results volume read-only on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--fd", type=int, help="serve on this listening socket, inherited (instead of --port)")
    parser.add_argument("--parent", type=int, default=0, help="stop when this process ends")
    args = parser.parse_args(argv)
    from bilancio_pipeline.storage.config import artifacts_from_env

    try:
        listener = socket.socket(fileno=args.fd) if args.fd is not None else None
        server = VolumeServer(artifacts_from_env(), args.port, listener=listener).start()
    except OSError as exc:
        sys.exit(f"results volume not served on port {args.port}: {exc}")
    if listener is None:  # started by `ui` (with --fd), which says where itself
        print(f"Results volume: {server.url}", flush=True)
    try:
        while not args.parent or os.getppid() == args.parent:
            time.sleep(1.0)
    except KeyboardInterrupt:
        pass
    server.stop()


if __name__ == "__main__":
    main()
