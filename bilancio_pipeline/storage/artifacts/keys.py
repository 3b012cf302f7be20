"""Key and prefix rules shared by every artifact store.

A key is a relative, slash-separated path such as `job/runs/<run_id>/out/events.jsonl`.
Both stores accept the same keys, so a volume can be copied between them unchanged and no
key can escape the local volume folder.
"""

from __future__ import annotations

from bilancio_pipeline.storage.artifacts.base import ArtifactError


def check_key(key: str, backend: str) -> str:
    """Return the key if it is a clean relative path, else raise ArtifactError naming it."""
    problem = _key_problem(key)
    if problem:
        raise ArtifactError(f"{backend}: invalid artifact key {key!r}: {problem}")
    return key


def folder_prefix(prefix: str, backend: str) -> str:
    """A prefix names a folder: 'job' and 'job/' both mean everything below `job/`.

    Treating prefixes as folders keeps `delete_prefix("job-a")` away from `job-ab/…`.
    The empty prefix means the whole volume.
    """
    trimmed = prefix.rstrip("/") if isinstance(prefix, str) else prefix
    if trimmed == "":
        return ""
    check_key(trimmed, backend)
    return trimmed + "/"


def _key_problem(key: object) -> str | None:
    if not isinstance(key, str) or key == "":
        return "it must be a non-empty string"
    if "\\" in key:
        return "backslashes are not allowed"
    if "\x00" in key:
        return "NUL characters are not allowed"
    if key.startswith("/"):
        return "it must be relative (no leading '/')"
    for segment in key.split("/"):
        if segment == "":
            return "empty path segments ('//' or a trailing '/') are not allowed"
        if segment in (".", ".."):
            return "'.' and '..' segments are not allowed"
    return None
