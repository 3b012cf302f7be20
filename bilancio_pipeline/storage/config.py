"""Choose the table store and the artifact store from the environment.

Nothing set: SQLite and a local folder under BILANCIO_HOME (default `.bilancio/`), offline.
BILANCIO_SUPABASE_DB_URL: Supabase's (or any) Postgres, through the same SQL code path.
BILANCIO_SUPABASE_URL + BILANCIO_SUPABASE_KEY: Supabase's REST API (service-role key to write).
BILANCIO_R2_BUCKET (+ BILANCIO_R2_ENDPOINT_URL or BILANCIO_R2_ACCOUNT_ID, and the key pair
BILANCIO_R2_ACCESS_KEY_ID / BILANCIO_R2_SECRET_ACCESS_KEY): artifacts on Cloudflare R2.
"""

from __future__ import annotations

import os
from pathlib import Path

from bilancio_pipeline.storage.artifacts.base import ArtifactStore
from bilancio_pipeline.storage.base import Store


def bilancio_home() -> Path:
    return Path(os.environ.get("BILANCIO_HOME") or ".bilancio").resolve()


def sqlite_url(home: Path | None = None) -> str:
    return f"sqlite:///{(home or bilancio_home()) / 'bilancio.db'}"


def open_store(
    db_url: str | None = None,
    supabase_url: str | None = None,
    supabase_key: str | None = None,
    home: str | Path | None = None,
) -> Store:
    """The store these settings name: Postgres/SQLite by URL, else Supabase REST, else SQLite."""
    from bilancio_pipeline.storage.retrying import RetryingStore

    if db_url:
        from bilancio_pipeline.storage.sql import SqlStore

        return RetryingStore(SqlStore(db_url))  # rides out a database restart
    if supabase_url or supabase_key:
        if not (supabase_url and supabase_key):
            missing = "BILANCIO_SUPABASE_KEY" if supabase_url else "BILANCIO_SUPABASE_URL"
            raise ValueError(f"Supabase REST needs both BILANCIO_SUPABASE_URL and BILANCIO_SUPABASE_KEY; {missing} is not set")
        from bilancio_pipeline.storage.rest import RestStore

        return RestStore(supabase_url, supabase_key)
    from bilancio_pipeline.storage.sql import SqlStore

    return RetryingStore(SqlStore(sqlite_url(Path(home).resolve() if home else None)))  # and a long write lock


def store_from_env() -> Store:
    env = os.environ.get
    return open_store(env("BILANCIO_SUPABASE_DB_URL"), env("BILANCIO_SUPABASE_URL"), env("BILANCIO_SUPABASE_KEY"))


def open_artifacts(
    bucket: str | None = None,
    endpoint_url: str | None = None,
    account_id: str | None = None,
    access_key_id: str | None = None,
    secret_access_key: str | None = None,
    home: str | Path | None = None,
) -> ArtifactStore:
    """R2 if a bucket is named, else the local volume folder under the data directory."""
    if bucket:
        from bilancio_pipeline.storage import log_redaction
        from bilancio_pipeline.storage.artifacts.s3 import S3ArtifactStore

        log_redaction.install()  # botocore's debug log would show the access key id

        if not endpoint_url and account_id:
            endpoint_url = f"https://{account_id}.r2.cloudflarestorage.com"
        if not endpoint_url:
            raise ValueError("BILANCIO_R2_BUCKET is set but neither BILANCIO_R2_ENDPOINT_URL nor BILANCIO_R2_ACCOUNT_ID is")
        return S3ArtifactStore(bucket, endpoint_url, access_key_id, secret_access_key)
    from bilancio_pipeline.storage.artifacts.local import LocalArtifactStore

    return LocalArtifactStore((Path(home).resolve() if home else bilancio_home()) / "volume")


def artifacts_from_env() -> ArtifactStore:
    env = os.environ.get
    return open_artifacts(
        env("BILANCIO_R2_BUCKET"), env("BILANCIO_R2_ENDPOINT_URL"), env("BILANCIO_R2_ACCOUNT_ID"),
        env("BILANCIO_R2_ACCESS_KEY_ID"), env("BILANCIO_R2_SECRET_ACCESS_KEY"),
    )
