"""The Modal results volume seen as an artifact store, through Modal's Python API (no CLI).

Sweeps run on Modal keep their artifacts there, in the same `{job_id}/runs/{run_id}/...`
layout as the local folder and the bucket, so the cleanup code treats all three alike.
"""

from __future__ import annotations

import gzip
import io
from collections import defaultdict
from datetime import datetime, timezone
from typing import Any

from bilancio_pipeline.storage.artifacts.base import GZIP_SUFFIX, ArtifactError, ArtifactStore, StoredJob, plain_name
from bilancio_pipeline.storage.artifacts.keys import check_key, folder_prefix

DEFAULT_VOLUME = "bilancio-results"


def _is_file(entry: Any) -> bool:
    from modal.types import FileEntryType

    return entry.type == FileEntryType.FILE


class ModalVolumeStore(ArtifactStore):
    """Artifacts on a Modal Volume. `volume` is a `modal.Volume` (or anything with its
    `listdir` / `remove_file` / `read_file` / `batch_upload` methods); by default the one named
    `name` is looked up, lazily, when first used."""

    backend = "modal"

    def __init__(self, name: str = DEFAULT_VOLUME, volume: Any = None) -> None:
        self.name = name
        self._volume = volume

    def __repr__(self) -> str:
        return f"ModalVolumeStore({self.name!r})"

    @property
    def volume(self) -> Any:
        if self._volume is None:
            import modal

            self._volume = modal.Volume.from_name(self.name)
        return self._volume

    def put_bytes(self, key: str, data: bytes) -> str:
        check_key(key, self.backend)
        return self._put(key, data)

    def put_compressed(self, key: str, gzipped: bytes) -> str:
        """Kept as `<key>.gz`, the way the containers write run folders onto the volume."""
        check_key(key, self.backend)
        return self._put(key + GZIP_SUFFIX, gzipped)

    def get_bytes(self, key: str) -> bytes:
        check_key(key, self.backend)
        with self._translate(f"read {key!r}"):
            try:
                return b"".join(self.volume.read_file(key))
            except FileNotFoundError:  # kept compressed
                return gzip.decompress(b"".join(self.volume.read_file(key + GZIP_SUFFIX)))

    def list_keys(self, prefix: str) -> list[str]:
        return sorted(plain_name(path)[0] for path, _ in self._files(folder_prefix(prefix, self.backend)))

    def delete_prefix(self, prefix: str) -> int:
        folder = folder_prefix(prefix, self.backend)
        if not folder:
            raise ArtifactError("modal: refusing to delete with an empty prefix (that is the whole volume)")
        count = len(self._files(folder))
        if count:
            with self._translate(f"delete {folder!r}"):
                self.volume.remove_file(folder.rstrip("/"), recursive=True)
        return count

    def list_jobs(self) -> list[StoredJob]:
        sizes: dict[str, list[int]] = defaultdict(list)
        newest: dict[str, int] = {}
        for path, entry in self._files(""):
            job_id = path.split("/", 1)[0]
            if "/" not in path:  # a loose file at the top is no experiment
                continue
            sizes[job_id].append(entry.size)
            newest[job_id] = max(newest.get(job_id, 0), entry.mtime)
        return [
            StoredJob(
                job_id=job_id,
                n_objects=len(sizes[job_id]),
                total_bytes=sum(sizes[job_id]),
                last_modified=datetime.fromtimestamp(newest[job_id], tz=timezone.utc),
            )
            for job_id in sorted(sizes)
        ]

    def signed_url(self, key: str, expires_seconds: int = 3600) -> str:
        raise ArtifactError("modal: a Modal Volume has no download URLs; use `modal volume get` or copy the run to R2")

    # -- helpers -------------------------------------------------------------------------

    def _put(self, path: str, data: bytes) -> str:
        with self._translate(f"write {path!r}"):
            with self.volume.batch_upload(force=True) as batch:
                batch.put_file(io.BytesIO(data), path)
        return self._url(path)

    def _url(self, key: str) -> str:
        return f"modal://{self.name}/{key}"

    def _files(self, folder: str) -> list[tuple[str, Any]]:
        """(key, entry) of every file below a folder prefix ('' = the whole volume)."""
        with self._translate(f"list {folder or '/'!r}"):
            try:
                entries = self.volume.listdir(folder.rstrip("/") or "/", recursive=True)
            except FileNotFoundError:
                return []
        return [(entry.path.lstrip("/"), entry) for entry in entries if _is_file(entry)]

    def _translate(self, action: str):
        return _ModalErrors(self.name, action)


class _ModalErrors:
    """Turns Modal's errors into ArtifactError naming the volume and the action."""

    def __init__(self, name: str, action: str) -> None:
        self.name, self.action = name, action

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is None or isinstance(exc, ArtifactError):
            return False
        if isinstance(exc, FileNotFoundError):
            raise ArtifactError(f"modal: could not {self.action} on volume {self.name!r}: not found") from None
        if isinstance(exc, Exception):
            raise ArtifactError(f"modal: could not {self.action} on volume {self.name!r}: {type(exc).__name__}: {exc}") from exc
        return False
