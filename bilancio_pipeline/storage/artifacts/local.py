"""Artifacts in a folder on this machine (the "local volume"), laid out exactly like the bucket."""

from __future__ import annotations

import gzip
import os
import uuid
import zlib
from datetime import datetime, timezone
from pathlib import Path

from bilancio_pipeline.storage.artifacts.base import (
    GZIP_SUFFIX,
    ArtifactError,
    ArtifactStore,
    StoredJob,
    plain_name,
    run_key,
    run_prefix,
)
from bilancio_pipeline.storage.artifacts.keys import check_key, folder_prefix

# Half-written files carry this suffix until they are renamed into place; listings skip them.
_PARTIAL_SUFFIX = ".partial"


class LocalArtifactStore(ArtifactStore):
    """One file per key under `root` (`<key>.gz` when kept compressed); writes are atomic
    (temp file, then rename).

    URLs are plain file:// URLs. `signed_url` returns the same URL: it does not expire and
    grants nothing beyond the reader's own file permissions.
    """

    backend = "local"

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()

    def __repr__(self) -> str:
        return f"LocalArtifactStore({str(self.root)!r})"

    def put_bytes(self, key: str, data: bytes) -> str:
        return self._write(key, self._file(key, compressed=False), data)

    def put_compressed(self, key: str, gzipped: bytes) -> str:
        return self._write(key, self._file(key, compressed=True), gzipped)

    def _write(self, key: str, path: Path, data: bytes) -> str:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # A unique sibling, created like any new file (so the umask applies, unlike mkstemp's 0600),
            # then renamed over the target: readers see the old bytes or the new, never half.
            tmp_path = path.with_name(f".{path.name}.{uuid.uuid4().hex}{_PARTIAL_SUFFIX}")
            fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            try:
                with os.fdopen(fd, "wb") as tmp:
                    tmp.write(data)
                os.replace(tmp_path, path)
            except BaseException:
                tmp_path.unlink(missing_ok=True)
                raise
            _other_form(path).unlink(missing_ok=True)  # else a reader could find the old content
        except OSError as exc:
            raise ArtifactError(f"local: could not write {key!r} under {self.root}: {exc.strerror or exc}") from exc
        return path.as_uri()

    def move_run(self, job_id: str, run_id: str, local_dir: Path) -> dict[str, str]:
        """Move the run's files into the volume. When the run has no folder there yet (the usual
        case) its whole folder is renamed into place: one atomic metadata write, no bytes copied.
        Otherwise (a re-run, or scratch space on another filesystem) file by file."""
        target = self._path(run_prefix(job_id, run_id))
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.rename(local_dir, target)  # refused if the target holds files, or across filesystems
        except OSError:
            return self._move_files(job_id, run_id, Path(local_dir))
        base = target.as_uri()
        return {plain_name(name)[0]: f"{base}/{name}" for name in _relative_files(target)}

    def _move_files(self, job_id: str, run_id: str, local_dir: Path) -> dict[str, str]:
        urls = {}
        for file_name in _relative_files(local_dir):
            name, compressed = plain_name(file_name)
            key = run_key(job_id, run_id, name)
            source, target = local_dir / file_name, self._file(key, compressed)
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(source, target)
                _other_form(target).unlink(missing_ok=True)
            except OSError:  # another filesystem, or a rename refused: copy instead
                (self.put_compressed if compressed else self.put_bytes)(key, source.read_bytes())
            urls[name] = target.as_uri()
        return urls

    def get_bytes(self, key: str) -> bytes:
        path = self._file(key, compressed=False)
        try:
            try:
                return path.read_bytes()
            except FileNotFoundError:
                return gzip.decompress(_other_form(path).read_bytes())
        except FileNotFoundError:
            raise ArtifactError(f"local: no artifact {key!r} under {self.root}") from None
        except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
            detail = getattr(exc, "strerror", None) or exc
            raise ArtifactError(f"local: could not read {key!r} under {self.root}: {detail}") from exc

    def list_keys(self, prefix: str) -> list[str]:
        folder = folder_prefix(prefix, self.backend)
        return sorted({plain_name(key)[0] for key, _ in self._files_under(folder)})

    def delete_prefix(self, prefix: str) -> int:
        folder = folder_prefix(prefix, self.backend)
        if not folder:
            raise ArtifactError("local: refusing to delete with an empty prefix (that is the whole volume)")
        deleted = 0
        for _, path in self._files_under(folder):
            path.unlink(missing_ok=True)
            deleted += 1
        self._remove_empty_dirs(self.root / folder)
        return deleted

    def list_jobs(self) -> list[StoredJob]:
        if not self.root.is_dir():
            return []
        jobs = []
        for job_dir in sorted(p for p in self.root.iterdir() if p.is_dir()):
            stats = [path.stat() for _, path in self._files_under(job_dir.name + "/")]
            if not stats:  # an empty folder holds no job (the bucket would not show it either)
                continue
            newest = max(s.st_mtime for s in stats)
            jobs.append(
                StoredJob(
                    job_id=job_dir.name,
                    n_objects=len(stats),
                    total_bytes=sum(s.st_size for s in stats),
                    last_modified=datetime.fromtimestamp(newest, tz=timezone.utc),
                )
            )
        return jobs

    def signed_url(self, key: str, expires_seconds: int = 3600) -> str:
        """A file:// URL to the artifact's file (the `.gz` one if it is kept compressed). Local
        URLs never expire; `expires_seconds` is ignored."""
        path = self._file(key, compressed=False)
        return (path if path.exists() or not _other_form(path).exists() else _other_form(path)).as_uri()

    # -- helpers -------------------------------------------------------------------------

    def _file(self, key: str, compressed: bool) -> Path:
        """The file that holds a key, plain or compressed."""
        path = self._path(key)
        return _other_form(path) if compressed else path

    def _path(self, key: str) -> Path:
        check_key(key, self.backend)
        for reserved in (_PARTIAL_SUFFIX, GZIP_SUFFIX):  # half-written files; compressed ones
            if key.endswith(reserved):
                raise ArtifactError(
                    f"local: invalid artifact key {key!r}: names ending in {reserved!r} are reserved"
                )
        path = self.root / key
        # Key rules already forbid '..'; this also stops a symlink inside the volume from
        # leading writes outside it.
        if not path.resolve().is_relative_to(self.root):
            raise ArtifactError(f"local: artifact key {key!r} leads outside the volume folder")
        return path

    def _files_under(self, folder: str) -> list[tuple[str, Path]]:
        """(key, path) of every finished file below a folder prefix ('' = whole volume)."""
        base = self.root / folder if folder else self.root
        if not base.is_dir():
            return []
        found = []
        for dirpath, _, filenames in os.walk(base):
            for name in filenames:
                if name.endswith(_PARTIAL_SUFFIX):
                    continue
                path = Path(dirpath) / name
                found.append((path.relative_to(self.root).as_posix(), path))
        return found

    def _remove_empty_dirs(self, top: Path) -> None:
        """Remove now-empty folders from `top` upwards, stopping at the volume root."""
        if top.is_dir():
            for dirpath, _, _ in sorted(os.walk(top), key=lambda entry: len(entry[0]), reverse=True):
                _rmdir_if_empty(Path(dirpath))
        parent = top.parent
        while parent != self.root and parent.is_relative_to(self.root):
            if not _rmdir_if_empty(parent):
                break
            parent = parent.parent


def _other_form(path: Path) -> Path:
    """The compressed file of a plain one, or the plain file of a compressed one."""
    name, compressed = plain_name(path.name)
    return path.with_name(name if compressed else name + GZIP_SUFFIX)


def _relative_files(folder: Path) -> list[str]:
    """Every file below folder, as sorted '/'-separated paths relative to it."""
    found = []
    for dirpath, _, filenames in os.walk(folder):
        rel = os.path.relpath(dirpath, folder)
        found += [name if rel == "." else f"{rel}/{name}".replace(os.sep, "/") for name in filenames]
    return sorted(found)


def _rmdir_if_empty(path: Path) -> bool:
    try:
        path.rmdir()
        return True
    except OSError:  # not empty (or already gone)
        return False
