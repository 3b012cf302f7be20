"""The table store over Supabase's REST API (PostgREST), through supabase-py.

Requests are built with supabase-py's query builders, so the wire format (`on_conflict`,
`Prefer: resolution=merge-duplicates`, `columns=`, filters) is the client's own. They are sent
by this module rather than by `.execute()` because the HTTP status is what tells a transient
failure (network error, 429, 5xx) from a refusal, and `.execute()` does not report it; the
client's own retry loop (GETs only, fixed sleeps, no deadline) is switched off in favour of
one policy for every request: exponential backoff with jitter under a deadline.

Writes are chunked (the client sends one POST however many rows it is given); reads page with
`offset`/`limit` past PostgREST's row cap until a short page; long id lists are split so that
URLs stay short. Rows come back shaped like the SQL store's: aware UTC datetimes, floats, ints.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import date, datetime, timezone
from decimal import Decimal
from enum import Enum
from typing import Any

import httpx
import orjson
import tenacity
from postgrest.types import CountMethod, ReturnMethod
from sqlalchemy import Boolean, DateTime, Float, Integer
from sqlalchemy.dialects import postgresql
from supabase import ClientOptions, create_client

from bilancio_pipeline.storage import schema
from bilancio_pipeline.storage.base import NotFound, Row, Store, StoreError

log = logging.getLogger(__name__)

BACKEND = "supabase-rest"
RUN_RESULTS = "run_results"

# SQLSTATEs worth another try whatever the HTTP status: serialization failure, deadlock.
_TRANSIENT_CODES = {"40001", "40P01"}
# Codes that mean the database does not have the schema this code expects.
_SCHEMA_CODES = {"42P01", "42703", "PGRST204", "PGRST205"}
# Failures after which the server certainly did not apply the request, so even a
# non-idempotent insert may be sent again.
_NOT_APPLIED_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_NOT_APPLIED_STATUSES = {429, 503}


class _Transient(Exception):
    """One attempt failed in a way that may pass; `not_applied` says the server did nothing."""

    def __init__(self, description: str, not_applied: bool):
        super().__init__(description)
        self.not_applied = not_applied


def _describe_error(response: httpx.Response) -> tuple[str | None, str]:
    """(PostgREST/SQLSTATE code, readable description) of an error response."""
    code = message = details = hint = None
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        body = None
    if isinstance(body, dict):
        code = body.get("code")
        message, details, hint = body.get("message"), body.get("details"), body.get("hint")
    else:
        text = response.text.strip()
        message = response.reason_phrase or "error"
        details = text[:300] if text else None
    parts = [f"HTTP {response.status_code}" + (f", code {code}" if code else "")]
    parts.append(str(message or response.reason_phrase or "no message"))
    if details:
        parts.append(f"details: {details}")
    if hint:
        parts.append(f"hint: {hint}")
    if code in _SCHEMA_CODES:
        parts.append("the database schema does not match this code: are supabase/migrations applied?")
    return (str(code) if code is not None else None), "; ".join(parts)


# --- rows on the wire ----------------------------------------------------------------------


def _json_value(value: Any, top_level: bool = True) -> Any:
    """A value as JSON PostgREST reads into the column: datetimes as ISO UTC, lists and dicts
    as such. A non-finite float becomes the text Postgres reads as float8 ('NaN'); inside a
    JSON document, where there is no such number, it becomes null."""
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        if not top_level:
            return None
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, datetime):
        if value.tzinfo is None:  # the store's contract is UTC; a naive value is read as UTC
            value = value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return _json_value(float(value), top_level)
    if isinstance(value, Enum):
        return _json_value(value.value, top_level)
    if isinstance(value, dict):
        return {str(k): _json_value(v, top_level=False) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        # Array columns (float8[]) take 'NaN' text elements; JSON documents take null.
        return [_json_value(v, top_level=top_level) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return _json_value(value.item(), top_level)
    if hasattr(value, "tolist") and callable(value.tolist):  # numpy arrays
        return _json_value(value.tolist(), top_level)
    raise TypeError(f"cannot send a value of type {type(value).__name__} to Supabase")


def _parse_timestamp(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    text = str(value).replace(" ", "T", 1)
    text = re.sub(r"([+-]\d\d)$", r"\1:00", text)  # Postgres may print "+00"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def _number(kind: type) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        return None if value is None else kind(value)  # float("NaN") reads Postgres' 'NaN' text

    return convert


def _as_list(item: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda value: None if value is None else [item(v) for v in value]


def _identity(value: Any) -> Any:
    return value


def _converter(column) -> Callable[[Any], Any]:
    """How a column's JSON value becomes the Python value the SQL store would return."""
    impl = column.type.dialect_impl(postgresql.dialect())
    if isinstance(impl, postgresql.ARRAY):
        item = impl.item_type
        return _as_list(_number(float if isinstance(item, Float) else int))
    if isinstance(impl, DateTime):
        return _parse_timestamp
    if isinstance(impl, Boolean):
        return lambda v: None if v is None else bool(v)
    if isinstance(impl, Float):
        return _number(float)
    if isinstance(impl, Integer):
        return _number(int)
    return _identity


_CONVERTERS: dict[str, dict[str, Callable[[Any], Any]]] = {
    name: {c.name: _converter(c) for c in table.columns} for name, table in schema.TABLES.items()
}
_CONVERTERS[RUN_RESULTS] = {
    name: (_CONVERTERS["runs"].get(name) or _CONVERTERS["metrics"].get(name) or _identity)
    for name in schema.RUN_RESULTS_COLUMNS
}


def _decode(table: str, rows: list[dict]) -> list[Row]:
    converters = _CONVERTERS[table]
    return [{k: converters.get(k, _identity)(v) for k, v in row.items()} for row in rows]


def _chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


# --- the store -----------------------------------------------------------------------------


class RestStore(Store):
    """Jobs, runs, metrics, events and job metrics in Supabase, over its REST API.

    `key` should be the service-role key (writes go through it). `http_client` replaces the
    HTTP client (tests give one with a mock transport; its timeouts then apply). `deadline_s`
    bounds how long one request keeps being retried; `wait` is the tenacity wait strategy
    between attempts (default: exponential backoff with full jitter, 0.25 s to 8 s).
    """

    backend = BACKEND

    def __init__(
        self,
        url: str,
        key: str,
        *,
        http_client: httpx.Client | None = None,
        chunk_size: int = 500,
        page_size: int = 1000,
        in_chunk_size: int = 100,
        deadline_s: float = 60,
        wait: tenacity.wait.wait_base | None = None,
        timeout_s: float = 30,
    ):
        if not url or not re.match(r"^https?://[^/]", url):
            raise ValueError("BILANCIO_SUPABASE_URL must be an http(s) URL such as https://<project>.supabase.co")
        if not key:
            raise ValueError("BILANCIO_SUPABASE_KEY is empty")
        for name, number in (("chunk_size", chunk_size), ("page_size", page_size), ("in_chunk_size", in_chunk_size)):
            if number < 1:
                raise ValueError(f"{name} must be at least 1, got {number}")
        self._key = key
        self._url = url.rstrip("/")
        self.chunk_size = chunk_size
        self.page_size = page_size
        self.in_chunk_size = in_chunk_size
        self.deadline_s = deadline_s
        self._wait = wait if wait is not None else tenacity.wait_random_exponential(multiplier=0.25, max=8)
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client(timeout=timeout_s, follow_redirects=True)
        options = ClientOptions(
            httpx_client=self._http,
            postgrest_client_retry=False,  # retried here, with backoff and a deadline
            auto_refresh_token=False,
            persist_session=False,
        )
        self._client = create_client(self._url, key, options)

    def __repr__(self) -> str:  # never the key
        return f"RestStore({self._url!r})"

    # --- sending --------------------------------------------------------------------------

    def _table(self, name: str):
        return self._client.table(name)

    def _scrub(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text

    def _send(self, builder, what: str, *, idempotent: bool = True) -> httpx.Response:
        """Send a built request, retrying transient failures until the deadline."""
        request = builder.request
        retry_if = (lambda e: isinstance(e, _Transient)) if idempotent else (
            lambda e: isinstance(e, _Transient) and e.not_applied
        )
        retrying = tenacity.Retrying(
            stop=tenacity.stop_before_delay(self.deadline_s),
            wait=self._wait,
            retry=tenacity.retry_if_exception(retry_if),
            before_sleep=lambda state: log.warning(
                "%s: %s failed (%s); attempt %d, retrying in %.2f s",
                BACKEND, what, self._scrub(str(state.outcome.exception())), state.attempt_number,
                state.upcoming_sleep,
            ),
            reraise=True,
        )
        try:
            return retrying(self._send_once, request, what)
        except _Transient as exc:
            attempts = retrying.statistics.get("attempt_number", 1)
            message = f"{what} failed after {attempts} attempt(s): {exc}"
            raise StoreError(BACKEND, self._scrub(message), transient=True) from None

    def _send_once(self, request, what: str) -> httpx.Response:
        try:
            response = request.send(httpx.Headers())
        except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            raise _Transient(self._scrub(f"{type(exc).__name__}: {exc}"), isinstance(exc, _NOT_APPLIED_ERRORS)) from None
        except httpx.HTTPError as exc:
            raise StoreError(BACKEND, self._scrub(f"{what} failed: {type(exc).__name__}: {exc}")) from None
        if response.is_success:
            return response
        code, description = _describe_error(response)
        description = self._scrub(description)
        status = response.status_code
        if status == 429 or status >= 500 or code in _TRANSIENT_CODES:
            raise _Transient(description, status in _NOT_APPLIED_STATUSES)
        raise StoreError(BACKEND, f"{what} failed: {description}")

    @staticmethod
    def _rows(response: httpx.Response) -> list[dict]:
        return orjson.loads(response.content) if response.content else []

    # --- writing --------------------------------------------------------------------------

    def _payload(self, table: str, rows: Iterable[Row], defaults: dict[str, Any]) -> list[dict]:
        """Rows as JSON-safe dicts, checked against the table's columns before anything is sent."""
        columns = schema.TABLES[table].c
        key = schema.CONFLICT_KEYS.get(table, ())
        payload = []
        for index, row in enumerate(rows):
            unknown = sorted(set(row) - set(columns.keys()))
            if unknown:
                raise ValueError(f"{table} row {index}: unknown column(s) {', '.join(unknown)}")
            missing = [k for k in key if row.get(k) in (None, "")]
            if missing:
                raise ValueError(f"{table} row {index}: {', '.join(missing)} is required")
            item = {name: value for name, value in defaults.items() if name not in row}
            for name, value in row.items():
                try:
                    item[name] = _json_value(value)
                except TypeError as exc:
                    raise ValueError(f"{table} row {index}, column {name}: {exc}") from None
            payload.append(item)
        return payload

    def _batches(self, payload: list[dict]) -> Iterator[list[dict]]:
        """Chunks whose rows all carry the same columns: an upsert sets every column the
        request names, so a row must never be sent with columns it did not have (they would
        be overwritten with null)."""
        groups: dict[frozenset, list[dict]] = {}
        for item in payload:
            groups.setdefault(frozenset(item), []).append(item)
        for rows in groups.values():
            yield from _chunks(rows, self.chunk_size)

    def _upsert(self, table: str, rows: Sequence[Row]) -> None:
        payload = self._payload(table, rows, {"updated_at": _now()})
        on_conflict = ",".join(schema.CONFLICT_KEYS[table])
        for batch in self._batches(payload):
            builder = self._table(table).upsert(batch, on_conflict=on_conflict, returning=ReturnMethod.minimal)
            self._send(builder, f"upsert of {len(batch)} row(s) into {table}")

    # --- reading --------------------------------------------------------------------------

    def _select_all(
        self,
        table: str,
        build: Callable[[Any], Any],
        order: Sequence[tuple[str, bool]],
        what: str,
        *,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Row]:
        """Every row of a query (up to `limit`), page by page in a stable order."""
        rows: list[dict] = []
        position = offset
        while limit is None or len(rows) < limit:
            size = self.page_size if limit is None else min(self.page_size, limit - len(rows))
            builder = build(self._table(table).select("*"))
            for column, descending in order:
                builder = builder.order(column, desc=descending)
            builder = builder.range(position, position + size - 1)
            page = self._rows(self._send(builder, what))
            rows.extend(page)
            position += len(page)
            if len(page) < size:
                break
        return _decode(table, rows)

    def _select_in(self, table: str, column: str, values: Iterable[str], build, order, what: str) -> list[Row]:
        """Rows whose `column` is one of `values`, with the list split so each URL stays short."""
        unique = sorted({str(v) for v in values})
        rows: list[Row] = []
        for part in _chunks(unique, self.in_chunk_size):
            rows.extend(self._select_all(table, lambda q, part=part: build(q).in_(column, part), order, what))
        return rows

    # --- jobs -----------------------------------------------------------------------------

    def save_job(self, job: Row) -> None:
        self._upsert("jobs", [job])

    def get_job(self, job_id: str) -> Row:
        # A list query, not .single(): an unknown id is an empty list, not error PGRST116.
        builder = self._table("jobs").select("*").eq("job_id", job_id).limit(1)
        rows = self._rows(self._send(builder, f"read of job {job_id!r}"))
        if not rows:
            raise NotFound(BACKEND, f"no job {job_id!r}")
        return _decode("jobs", rows)[0]

    def list_jobs(self, status: str | None = None, limit: int = 100, offset: int = 0) -> list[Row]:
        def build(query):
            return query.eq("status", status) if status else query

        return self._select_all(
            "jobs", build, [("created_at", True), ("job_id", False)], "listing jobs", limit=limit, offset=offset
        )

    def update_job(self, job_id: str, **fields: Any) -> None:
        if not fields:
            raise ValueError("update_job needs at least one column to set")
        if "job_id" in fields:
            raise ValueError("update_job cannot change job_id")
        (payload,) = self._payload("jobs", [{"job_id": job_id, **fields}], {"updated_at": _now()})
        payload.pop("job_id")
        # return=representation (of the key only) tells whether any row matched.
        builder = self._table("jobs").update(payload).eq("job_id", job_id).select("job_id")
        if not self._rows(self._send(builder, f"update of job {job_id!r}")):
            raise NotFound(BACKEND, f"no job {job_id!r}")

    def delete_job(self, job_id: str) -> None:
        # Runs, metrics, events and job_metrics go with it: the foreign keys cascade.
        builder = self._table("jobs").delete(returning=ReturnMethod.minimal).eq("job_id", job_id)
        self._send(builder, f"delete of job {job_id!r}")

    # --- events ---------------------------------------------------------------------------

    def log_events(self, events: Sequence[Row]) -> None:
        payload = self._payload("job_events", events, {"timestamp": _now()})
        for batch in self._batches(payload):
            builder = self._table("job_events").insert(batch, returning=ReturnMethod.minimal)
            # A plain insert is not idempotent: resent only when the server surely did nothing.
            self._send(builder, f"insert of {len(batch)} event(s)", idempotent=False)

    def list_events(self, job_id: str) -> list[Row]:
        return self._select_all(
            "job_events", lambda q: q.eq("job_id", job_id), [("timestamp", False), ("id", False)],
            f"listing events of job {job_id!r}",
        )

    # --- runs and metrics -----------------------------------------------------------------

    def upsert_runs(self, rows: Sequence[Row]) -> None:
        self._upsert("runs", rows)

    def upsert_metrics(self, rows: Sequence[Row]) -> None:
        self._upsert("metrics", rows)

    def list_runs(self, job_id: str, status: str | None = None, run_ids: Iterable[str] | None = None) -> list[Row]:
        def build(query):
            query = query.eq("job_id", job_id)
            return query.eq("status", status) if status else query

        order = [("run_id", False)]
        what = f"listing runs of job {job_id!r}"
        if run_ids is None:
            return self._select_all("runs", build, order, what)
        rows = self._select_in("runs", "run_id", run_ids, build, order, what)
        return sorted(rows, key=lambda r: r["run_id"])

    def get_metrics(self, run_ids: Iterable[str]) -> list[Row]:
        rows = self._select_in("metrics", "run_id", run_ids, lambda q: q, [("run_id", False)], "reading metrics")
        return sorted(rows, key=lambda r: r["run_id"])

    def run_counts(self, job_id: str) -> dict[str, int]:
        # One count per status (HEAD with count=exact): constant cost, however many runs.
        counts = {}
        for status in schema.RUN_STATUSES:
            builder = (
                self._table("runs").select("run_id", count=CountMethod.exact, head=True)
                .eq("job_id", job_id).eq("status", status)
            )
            response = self._send(builder, f"counting {status} runs of job {job_id!r}")
            total = response.headers.get("content-range", "").rpartition("/")[2]
            if not total.isdigit():
                raise StoreError(BACKEND, f"counting runs: the server sent no row count (Content-Range {total!r})")
            if int(total):
                counts[status] = int(total)
        return counts

    def query_results(
        self,
        where: Any = None,
        *,
        job_id: str | None = None,
        regime: str | None = None,
        order_by: str | None = None,
        descending: bool = False,
        limit: int | None = None,
    ) -> list[Row]:
        if order_by is not None and order_by not in schema.RUN_RESULTS_COLUMNS:
            raise ValueError(f"order_by: unknown column {order_by!r}; the columns are: {', '.join(schema.RUN_RESULTS_COLUMNS)}")
        if limit is not None and limit < 0:
            raise ValueError(f"limit must not be negative, got {limit}")
        params: list[tuple[str, str]] = []
        if where is not None:
            from bilancio_pipeline.storage import filters

            expr = filters.parse_filter(where) if isinstance(where, str) else where
            params = filters.to_postgrest(expr)

        def build(query):
            if job_id:
                query = query.eq("job_id", job_id)
            if regime:
                query = query.eq("regime", regime)
            # The filter module wrote PostgREST's own `key=op.value` syntax with values
            # escaped; they go on the query as they are.
            for key, value in params:
                query.request.params = query.request.params.add(key, value)
            return query

        order = [(order_by, descending)] if order_by else []
        if order_by != "run_id":
            order.append(("run_id", False))  # a total order, so pages neither skip nor repeat
        if limit == 0:
            return []
        return self._select_all(RUN_RESULTS, build, order, "querying run results", limit=limit)

    # --- job metrics ----------------------------------------------------------------------

    def save_job_metrics(self, row: Row) -> None:
        self._upsert("job_metrics", [row])

    def get_job_metrics(self, job_id: str) -> Row | None:
        builder = self._table("job_metrics").select("*").eq("job_id", job_id).limit(1)
        rows = self._rows(self._send(builder, f"read of job metrics of {job_id!r}"))
        return _decode("job_metrics", rows)[0] if rows else None

    # --- housekeeping ---------------------------------------------------------------------

    def close(self) -> None:
        if self._owns_http:
            self._http.close()
