"""Resources, configured only through `dagster.EnvVar`.

A setting that is not in the environment stays None and the embedded default is used (SQLite,
the local volume, the local process pool), so `dagster dev` works with nothing set. A setting
that is set is passed as an EnvVar, so its value is read at run time and never shown in the UI.
"""

from __future__ import annotations

import os

import dagster as dg

from bilancio_pipeline.compute.base import Compute
from bilancio_pipeline.storage.artifacts.base import ArtifactStore
from bilancio_pipeline.storage.base import Store
from bilancio_pipeline.storage.config import open_artifacts, open_store


def env(name: str) -> dg.EnvVar | None:
    """The EnvVar for a setting that is present, else None (use the default)."""
    return dg.EnvVar(name) if os.environ.get(name) else None


class StoreResource(dg.ConfigurableResource):
    """The table store: Postgres by URL, Supabase REST by URL + key, else SQLite under BILANCIO_HOME."""

    db_url: str | None = None
    supabase_url: str | None = None
    supabase_key: str | None = None
    home: str | None = None

    def open(self) -> Store:
        return open_store(self.db_url, self.supabase_url, self.supabase_key, self.home)


class ArtifactsResource(dg.ConfigurableResource):
    """Run artifacts: Cloudflare R2 when a bucket is named, else the local volume folder."""

    bucket: str | None = None
    endpoint_url: str | None = None
    account_id: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    home: str | None = None

    def open(self) -> ArtifactStore:
        return open_artifacts(
            self.bucket, self.endpoint_url, self.account_id, self.access_key_id, self.secret_access_key, self.home
        )


class ComputeResource(dg.ConfigurableResource):
    """Where simulations run: `local` (a process pool on this machine) or `modal`."""

    executor: str = "local"
    workers: int | None = None  # local pool size; default: the machine's cores
    modal_app: str = "bilancio-pipeline"
    modal_max_concurrency: int = 100

    def open(self, executor: str | None = None) -> Compute:
        """The configured compute, or the one a sweep asked for by name."""
        executor = executor or self.executor
        if executor == "local":
            from bilancio_pipeline.compute.local import LocalCompute

            return LocalCompute(workers=self.workers)
        if executor == "modal":
            from bilancio_pipeline.compute.modal import ModalCompute

            return ModalCompute(app_name=self.modal_app, max_concurrency=self.modal_max_concurrency)
        raise ValueError(f"invalid executor {executor!r} (BILANCIO_EXECUTOR): must be local or modal")


def resources_from_env() -> dict[str, dg.ConfigurableResource]:
    workers = os.environ.get("BILANCIO_WORKERS")
    return {
        "store": StoreResource(
            db_url=env("BILANCIO_SUPABASE_DB_URL"),
            supabase_url=env("BILANCIO_SUPABASE_URL"),
            supabase_key=env("BILANCIO_SUPABASE_KEY"),
            home=env("BILANCIO_HOME"),
        ),
        "artifacts": ArtifactsResource(
            bucket=env("BILANCIO_R2_BUCKET"),
            endpoint_url=env("BILANCIO_R2_ENDPOINT_URL"),
            account_id=env("BILANCIO_R2_ACCOUNT_ID"),
            access_key_id=env("BILANCIO_R2_ACCESS_KEY_ID"),
            secret_access_key=env("BILANCIO_R2_SECRET_ACCESS_KEY"),
            home=env("BILANCIO_HOME"),
        ),
        "compute": ComputeResource(
            executor=env("BILANCIO_EXECUTOR") or "local",
            workers=int(workers) if workers else None,
            modal_app=env("BILANCIO_MODAL_APP") or "bilancio-pipeline",
            modal_max_concurrency=int(os.environ.get("BILANCIO_MODAL_MAX_CONCURRENCY", "100")),
        ),
    }
