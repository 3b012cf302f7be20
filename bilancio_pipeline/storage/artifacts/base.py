"""Where run artifacts are kept: a local folder by default, Cloudflare R2 (S3 API) for the cloud.

Both use one key layout, so moving between them is a copy:
    {job_id}/runs/{run_id}/{name}      e.g. castle-river-mountain/runs/<run_id>/out/events.jsonl
    {job_id}/job_manifest.json
    {job_id}/report.html

A run folder holds most files gzip-compressed, as `<name>.gz` (engine/artifacts.py). Stores keep
them compressed but under the plain key: a local folder as the `.gz` file, a bucket as the key
with `Content-Encoding: gzip` (so browsers and presigned links get the plain file). Keys,
listings and `get_bytes` always speak of the plain name and content.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from bilancio_pipeline.engine.artifacts import GZIP_SUFFIX


class ArtifactError(RuntimeError):
    """An artifact could not be stored or read; names the backend, never a secret."""


def run_prefix(job_id: str, run_id: str) -> str:
    return f"{job_id}/runs/{run_id}"


def run_key(job_id: str, run_id: str, name: str) -> str:
    return f"{run_prefix(job_id, run_id)}/{name}"


def plain_name(name: str) -> tuple[str, bool]:
    """(the artifact's name, whether the file holds it compressed) for a file of a run folder."""
    return (name[: -len(GZIP_SUFFIX)], True) if name.endswith(GZIP_SUFFIX) else (name, False)


def manifest_key(job_id: str) -> str:
    return f"{job_id}/job_manifest.json"


@dataclass(frozen=True)
class StoredJob:
    """One experiment (job) on the volume: how big it is and when it was last written."""

    job_id: str
    n_objects: int
    total_bytes: int
    last_modified: datetime  # timezone-aware UTC


class ArtifactStore(ABC):
    backend: str  # "local" or "r2": named in errors

    @abstractmethod
    def put_bytes(self, key: str, data: bytes) -> str:
        """Store one object; returns its URL (file://… or s3://bucket/key)."""

    @abstractmethod
    def put_compressed(self, key: str, gzipped: bytes) -> str:
        """Store one object given as gzip data; it reads back as the plain content. Returns its URL."""

    @abstractmethod
    def get_bytes(self, key: str) -> bytes:
        """Read one object (decompressed if stored compressed); raises ArtifactError
        (FileNotFoundError-like) if missing."""

    @abstractmethod
    def list_keys(self, prefix: str) -> list[str]:
        """Every key under a prefix."""

    @abstractmethod
    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under a prefix; returns how many were deleted."""

    @abstractmethod
    def list_jobs(self) -> list[StoredJob]:
        """Every top-level job folder with its size and newest modification time."""

    @abstractmethod
    def signed_url(self, key: str, expires_seconds: int = 3600) -> str:
        """A time-limited download URL (presigned on R2, a file:// path locally)."""

    def upload_run(self, job_id: str, run_id: str, local_dir: Path) -> dict[str, str]:
        """Upload every file under a run's output folder (a `.gz` file as its compressed plain
        name); returns {artifact name: URL}."""
        urls = {}
        for path in sorted(p for p in Path(local_dir).rglob("*") if p.is_file()):
            name, compressed = plain_name(path.relative_to(local_dir).as_posix())
            put = self.put_compressed if compressed else self.put_bytes
            urls[name] = put(run_key(job_id, run_id, name), path.read_bytes())
        return urls

    def move_run(self, job_id: str, run_id: str, local_dir: Path) -> dict[str, str]:
        """Like upload_run, for a folder the caller throws away afterwards (a store may move
        the files instead of copying them)."""
        return self.upload_run(job_id, run_id, local_dir)

    def download_prefix(self, prefix: str, dest: Path) -> list[Path]:
        """Copy every object under a prefix into dest, keeping the layout below the prefix."""
        written = []
        for key in self.list_keys(prefix):
            target = Path(dest) / key[len(prefix):].lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(self.get_bytes(key))
            written.append(target)
        return written
