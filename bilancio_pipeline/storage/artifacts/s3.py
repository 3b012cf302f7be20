"""Artifacts in a Cloudflare R2 bucket (any S3-compatible server works), through boto3.

Client settings R2 needs, and why:
- Checksums only "when_required": boto3 >= 1.36 adds a CRC32 checksum to every upload by
  default and streams it as an aws-chunked trailer, which R2 has rejected. The setting applies
  to uploads and to validating downloads alike.
- SigV4 ("s3v4") signatures and region "auto" (R2 ignores the region but the SDK needs one).
- Path-style addressing (`endpoint/bucket/key`), which R2 and S3-compatible servers all accept.
- Retries are botocore's own "standard" mode: up to `max_attempts` tries in all (first try
  included) with exponential back-off on throttling, 5xx answers and dropped connections.
  Nothing here retries on top of that.

Every botocore/boto3 failure becomes an ArtifactError naming the backend ("r2"), the bucket
and the key; the secret key never appears in it.
"""

from __future__ import annotations

import gzip
import mimetypes
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import boto3
from boto3.exceptions import Boto3Error
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from botocore.handlers import disable_signing

from bilancio_pipeline.storage.artifacts.base import ArtifactError, ArtifactStore, StoredJob
from bilancio_pipeline.storage.artifacts.keys import check_key, folder_prefix

# SigV4 presigned URLs live at most 7 days (R2 and S3 alike).
MAX_SIGNED_URL_SECONDS = 7 * 24 * 3600

# Types the standard library does not know, or guesses differently across platforms.
_CONTENT_TYPES = {
    ".yaml": "application/yaml",
    ".yml": "application/yaml",
    ".jsonl": "application/x-ndjson",
    ".json": "application/json",
    ".csv": "text/csv; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".md": "text/markdown; charset=utf-8",
    ".parquet": "application/vnd.apache.parquet",
}


def content_type_for(key: str) -> str:
    """The Content-Type stored with an object, chosen by the key's extension."""
    dot = key.rfind(".")
    known = _CONTENT_TYPES.get(key[dot:].lower()) if dot > key.rfind("/") else None
    return known or mimetypes.guess_type(key)[0] or "application/octet-stream"


# One boto3 session per profile for the whole process: a client made from a warm session
# takes milliseconds instead of the ~0.1 s spent loading the service model again.
_SESSIONS: dict[str | None, boto3.session.Session] = {}
_SESSIONS_LOCK = threading.Lock()


def r2_client(endpoint_url: str | None, region: str | None, access_key_id: str | None,
              secret_access_key: str | None, max_attempts: int = 5, *, profile_name: str | None = None,
              use_ssl: bool = True, verify: bool | str | None = None, session_token: str | None = None,
              unsigned: bool = False) -> Any:
    """A boto3 S3 client Cloudflare R2 accepts (the settings described at the top of this module).

    boto3 only, no Dagster: the Modal containers upload through this store too, and their image
    holds the engine and boto3. `r2_resource.R2S3Resource` gives Dagster code the same client.
    """
    config = Config(
        signature_version="s3v4",
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        s3={"addressing_style": "path"},
        retries={"mode": "standard", "max_attempts": max_attempts},
    )
    with _SESSIONS_LOCK:  # boto3 sessions are not thread-safe; the clients they make are
        session = _SESSIONS.get(profile_name)
        if session is None:
            session = _SESSIONS[profile_name] = boto3.session.Session(profile_name=profile_name)
        client = session.client(
            "s3",
            region_name=region,
            endpoint_url=endpoint_url,
            use_ssl=use_ssl,
            verify=verify,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            aws_session_token=session_token,
            config=config,
        )
    if unsigned:
        client.meta.events.register("choose-signer.s3.*", disable_signing)
    return client


@dataclass
class _Object:
    key: str  # without the store's prefix
    size: int
    last_modified: datetime


class S3ArtifactStore(ArtifactStore):
    """Artifacts under `prefix` in one bucket. URLs are `s3://bucket/key`."""

    backend = "r2"
    list_page_size = 1000  # keys per ListObjectsV2 page (the S3 maximum)
    delete_batch_size = 1000  # keys per DeleteObjects call (the S3 maximum)

    def __init__(
        self,
        bucket: str,
        endpoint_url: str,
        access_key_id: str | None,
        secret_access_key: str | None,
        region: str = "auto",
        prefix: str = "",
        max_attempts: int = 5,
    ) -> None:
        _require(bucket, "bucket (BILANCIO_R2_BUCKET)")
        _require(endpoint_url, "endpoint_url (BILANCIO_R2_ENDPOINT_URL)")
        if not endpoint_url.startswith(("https://", "http://")):
            raise ValueError(
                f"endpoint_url (BILANCIO_R2_ENDPOINT_URL) must start with https:// or http://, got {endpoint_url!r}"
            )
        _require(access_key_id, "access_key_id (BILANCIO_R2_ACCESS_KEY_ID)")
        _require(secret_access_key, "secret_access_key (BILANCIO_R2_SECRET_ACCESS_KEY)")
        if not isinstance(max_attempts, int) or max_attempts < 1:
            raise ValueError(f"max_attempts must be a positive integer, got {max_attempts!r}")
        self.bucket = bucket
        self.endpoint_url = endpoint_url
        self.region = region
        self.prefix = folder_prefix(prefix, self.backend)
        self._secret = secret_access_key
        self._access_key_id = access_key_id
        self.max_attempts = max_attempts
        self._client: Any = None

    def __repr__(self) -> str:  # never the keys
        return f"S3ArtifactStore(bucket={self.bucket!r}, endpoint_url={self.endpoint_url!r}, prefix={self.prefix!r})"

    def __getstate__(self) -> dict:  # boto3 clients do not pickle; rebuild on the other side
        return {**self.__dict__, "_client": None}

    @property
    def client(self) -> Any:
        """The boto3 S3 client (built on first use)."""
        if self._client is None:
            with self._translate("create a client for", None):
                self._client = r2_client(self.endpoint_url, self.region, self._access_key_id, self._secret,
                                         self.max_attempts)
        return self._client

    # -- ArtifactStore ---------------------------------------------------------------

    def put_bytes(self, key: str, data: bytes) -> str:
        full_key = self._full_key(key)
        with self._translate("upload", key):
            self.client.put_object(Bucket=self.bucket, Key=full_key, Body=data, ContentType=content_type_for(key))
        return f"s3://{self.bucket}/{full_key}"

    def put_compressed(self, key: str, gzipped: bytes) -> str:
        """Stored as sent, with `Content-Encoding: gzip`: R2 serves it so, and browsers (and
        presigned links) decode it to the plain file."""
        full_key = self._full_key(key)
        with self._translate("upload", key):
            self.client.put_object(Bucket=self.bucket, Key=full_key, Body=gzipped, ContentType=content_type_for(key),
                                   ContentEncoding="gzip")
        return f"s3://{self.bucket}/{full_key}"

    def get_bytes(self, key: str) -> bytes:
        full_key = self._full_key(key)
        with self._translate("download", key):
            try:
                response = self.client.get_object(Bucket=self.bucket, Key=full_key)
            except ClientError as exc:
                if _error_code(exc) in ("NoSuchKey", "404"):
                    raise ArtifactError(f"r2: no artifact {self._where(key)}") from None
                raise
            body = response["Body"].read()
        # boto3 hands over the stored bytes; a compressed object is decoded here
        return gzip.decompress(body) if response.get("ContentEncoding") == "gzip" else body

    def list_keys(self, prefix: str) -> list[str]:
        return sorted(obj.key for obj in self._objects(folder_prefix(prefix, self.backend)))

    def delete_prefix(self, prefix: str) -> int:
        folder = folder_prefix(prefix, self.backend)
        if not folder:
            raise ArtifactError(
                f"r2: refusing to delete with an empty prefix (that is all of s3://{self.bucket}/{self.prefix})"
            )
        keys = [self.prefix + obj.key for obj in self._objects(folder)]
        deleted = 0
        for start in range(0, len(keys), self.delete_batch_size):
            batch = keys[start : start + self.delete_batch_size]
            with self._translate("delete objects under", folder):
                response = self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
                )
            errors = response.get("Errors") or []
            if errors:
                first = errors[0]
                raise ArtifactError(
                    f"r2: could not delete {len(errors)} of {len(batch)} objects under {self._where(folder)};"
                    f" first: {first.get('Key')!r}: {first.get('Code')} {first.get('Message', '')}".rstrip()
                )
            deleted += len(batch)
        return deleted

    def list_jobs(self) -> list[StoredJob]:
        totals: dict[str, list] = {}  # job_id -> [count, bytes, newest]
        for obj in self._objects(""):
            job_id, slash, _ = obj.key.partition("/")
            if not slash:  # a loose top-level object is not a job
                continue
            entry = totals.setdefault(job_id, [0, 0, obj.last_modified])
            entry[0] += 1
            entry[1] += obj.size
            entry[2] = max(entry[2], obj.last_modified)
        return [
            StoredJob(job_id=job_id, n_objects=count, total_bytes=size, last_modified=newest)
            for job_id, (count, size, newest) in sorted(totals.items())
        ]

    def signed_url(self, key: str, expires_seconds: int = 3600) -> str:
        """A presigned GET URL that stops working after `expires_seconds` (1 s to 7 days)."""
        if not isinstance(expires_seconds, int) or not 1 <= expires_seconds <= MAX_SIGNED_URL_SECONDS:
            raise ValueError(
                f"expires_seconds must be an integer from 1 to {MAX_SIGNED_URL_SECONDS}, got {expires_seconds!r}"
            )
        full_key = self._full_key(key)
        with self._translate("sign a URL for", key):
            return self.client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": full_key}, ExpiresIn=expires_seconds
            )

    # -- helpers -----------------------------------------------------------------------

    def _full_key(self, key: str) -> str:
        return self.prefix + check_key(key, self.backend)

    def _where(self, key: str | None) -> str:
        return f"s3://{self.bucket}/{self.prefix}{key or ''}"

    def _objects(self, folder: str) -> Iterator[_Object]:
        """Every object below a folder prefix, page by page."""
        paginator = self.client.get_paginator("list_objects_v2")
        pages = paginator.paginate(
            Bucket=self.bucket,
            Prefix=self.prefix + folder,
            PaginationConfig={"PageSize": self.list_page_size},
        )
        with self._translate("list", folder):
            for page in pages:
                for item in page.get("Contents", []):
                    yield _Object(
                        key=item["Key"][len(self.prefix) :],
                        size=item["Size"],
                        last_modified=item["LastModified"].astimezone(timezone.utc),
                    )

    @contextmanager
    def _translate(self, action: str, key: str | None) -> Iterator[None]:
        """Turn botocore/boto3 errors into ArtifactError naming backend, bucket and key."""
        try:
            yield
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            message = exc.response.get("Error", {}).get("Message", "")
            detail = f"{_error_code(exc)} (HTTP {status}) {message}".strip()
            raise ArtifactError(self._scrub(f"r2: could not {action} {self._where(key)}: {detail}")) from exc
        except (BotoCoreError, Boto3Error) as exc:
            detail = f"{type(exc).__name__}: {exc}"
            raise ArtifactError(self._scrub(f"r2: could not {action} {self._where(key)}: {detail}")) from exc

    def _scrub(self, text: str) -> str:
        # botocore messages do not carry the secret today; keep it that way if they ever do.
        return text.replace(self._secret, "***") if self._secret else text


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "Unknown"))


def _require(value: object, field: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"R2 artifact storage needs {field}; it is not set")
