"""Turn every failure of a query command into one clear `Error: …` line and exit code 1.

Usage errors (bad flags) stay click's own: a usage line and exit code 2. A traceback is shown
only when BILANCIO_DEBUG is set, for whoever debugs the tool itself.
"""

from __future__ import annotations

import functools
import io
import os
from collections.abc import Iterator
from contextlib import contextmanager

import click

from bilancio_pipeline.storage.artifacts.base import ArtifactError
from bilancio_pipeline.storage.base import NotFound, Store, StoreError
from bilancio_pipeline.storage.log_redaction import redact

CLI_RETRY_DEADLINE_S = 15  # seconds a command waits out an unreachable store before it says so


class CommandError(click.ClickException):
    """Printed as `Error: <message>`; exit code 1."""

    def __init__(self, message: str):
        super().__init__(redact(message))


def _describe(exc: BaseException) -> str:
    from bilancio_pipeline.storage.filters import FilterError

    if isinstance(exc, NotFound):
        return str(exc)
    if isinstance(exc, StoreError):
        return f"the results store failed: {exc}"
    if isinstance(exc, FilterError):
        return f"bad --where expression: {exc}"
    if isinstance(exc, ArtifactError):
        return f"artifact storage failed: {exc}"
    if isinstance(exc, (ValueError, TypeError)):
        return str(exc)
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc}{f': {exc.filename}' if getattr(exc, 'filename', None) else ''}"
    name = type(exc).__module__.split(".")[0]
    if name in ("sqlalchemy", "psycopg2", "httpx", "botocore", "boto3", "postgrest", "supabase"):
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"the backend cannot be reached or refused the request ({type(exc).__name__}): {first_line}"
    return f"unexpected {type(exc).__name__}: {exc}"


def friendly_errors(command):
    """Decorator for a click callback: known failures become `Error: …` with exit code 1."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except BrokenPipeError:  # `… | head` closed the pipe: stop quietly, like other tools
            _silence_stdout()
            raise click.exceptions.Exit(1) from None
        except Exception as exc:  # the one place a failure becomes a message, never a traceback
            if os.environ.get("BILANCIO_DEBUG"):
                raise
            raise CommandError(_describe(exc)) from None

    return wrapper


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail again."""
    import sys

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        pass


@contextmanager
def open_store() -> Iterator[Store]:
    """The store the environment names (SQLite by default), closed afterwards."""
    from bilancio_pipeline.storage.config import store_from_env

    store = store_from_env()
    if getattr(store, "deadline_s", None):  # REST retries transient failures: a person waits less
        store.deadline_s = min(store.deadline_s, CLI_RETRY_DEADLINE_S)
    try:
        yield store
    finally:
        try:
            store.close()
        except Exception:  # closing must never hide the real outcome
            pass
