"""The table store over Supabase's REST API (PostgREST), in PostgREST's documented protocol
(https://docs.postgrest.org/en/stable/references/api/tables_views.html) with httpx.

Each request is spelled here (`_Query`): the table's path, filters as `column=op.value`
parameters, `order`, `offset`/`limit`, `on_conflict` and `columns` for upserts, and the `Prefer`
options (`resolution=merge-duplicates`, `return=minimal`, `count=exact`). Plain HTTP rather than
supabase-py's builders: the store needs each response's HTTP status (a transient failure —
network error, 429, 5xx — is retried, a refusal is not), which the builders' `.execute()` does
not report; and it uses no client library's private objects, so an upgrade of one cannot break
it. One retry policy for every request: exponential backoff with jitter under a deadline.

Writes are chunked (the client sends one POST however many rows it is given), one request per
set of columns, so that an upsert never nulls a column a row did not carry. A row that lacks
columns a new row needs (e.g. `{"run_id": …, "status": "completed"}`) can only change a stored
row: the stored rows are read and sent back complete, as the SQL store's UPDATE would leave
them. Reads page with `offset`/`limit` past PostgREST's row cap (1,000 on Supabase; keep
`page_size` at or below it) until a short page; long id lists are split so that URLs stay
short. Values are checked per column before anything is sent, and rows come back shaped like
the SQL store's: aware UTC datetimes, floats, ints, NaN stored as NULL.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timezone
from typing import Any

import httpx
import orjson
import tenacity

from bilancio_pipeline.storage import schema, values
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
        parts.append("the database schema does not match this code: `bilancio-pipeline db status` shows the migrations it lacks")
    if code == "42501":
        parts.append("writing needs the service-role key (BILANCIO_SUPABASE_KEY)")
    return (str(code) if code is not None else None), "; ".join(parts)


# --- rows on the wire (conversions: storage.values) ----------------------------------------------


def _decode(table: str, rows: list[dict]) -> list[Row]:
    info = values.TABLES[table]
    return [info.from_json(row) for row in rows]


def _chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


_RESERVED = re.compile(r'[,:()"\\\s]')


def _list_item(value: str) -> str:
    """A value inside `in.(…)`: double-quoted (with \\ escapes) if it holds a reserved character."""
    if not _RESERVED.search(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class _Query:
    """One PostgREST request: method, table, query parameters, `Prefer` options and JSON body."""

    def __init__(self, method: str, table: str, *, columns: str | None = None, body: Any = None,
                 prefer: Sequence[str] = ()):
        self.method, self.table, self.body, self.prefer = method, table, body, list(prefer)
        self.params: list[tuple[str, str]] = [] if columns is None else [("select", columns)]

    def where(self, column: str, condition: str) -> _Query:
        """A filter as PostgREST writes it, e.g. ("kappa", "lt.0.5") or ("or", "(…)")."""
        self.params.append((column, condition))
        return self

    def eq(self, column: str, value: Any) -> _Query:
        return self.where(column, f"eq.{value}")

    def in_(self, column: str, values: Iterable[str]) -> _Query:
        return self.where(column, "in.(" + ",".join(_list_item(str(v)) for v in values) + ")")

    def order(self, terms: Sequence[tuple]) -> _Query:
        """(column, descending[, "nulls last"]) terms, most significant first."""
        spelled = [f"{column}.{'desc' if descending else 'asc'}{'.nullslast' if nulls else ''}"
                   for column, descending, *nulls in terms]
        return self.where("order", ",".join(spelled))

    def page(self, offset: int, limit: int) -> _Query:
        return self.where("offset", str(offset)).where("limit", str(limit))


def _upsert(table: str, rows: list[dict], on_conflict: str) -> _Query:
    query = _Query("POST", table, body=rows, prefer=["return=minimal", "resolution=merge-duplicates"])
    return query.where("on_conflict", on_conflict).where("columns", _column_list(rows))


def _insert(table: str, rows: list[dict]) -> _Query:
    return _Query("POST", table, body=rows, prefer=["return=minimal"]).where("columns", _column_list(rows))


def _column_list(rows: list[dict]) -> str:
    # Names the columns the body sets: any other column keeps its stored value or default.
    return ",".join(f'"{name}"' for name in dict.fromkeys(k for row in rows for k in row))


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
        self._headers = {"apikey": key, "Authorization": f"Bearer {key}", "Accept": "application/json"}

    def __repr__(self) -> str:  # never the key
        return f"RestStore({self._url!r})"

    @property
    def location(self) -> str:
        return self._url

    # --- sending --------------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text

    def _send(self, query: _Query, what: str, *, idempotent: bool = True) -> httpx.Response:
        """Send a request, retrying transient failures until the deadline."""
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
            return retrying(self._send_once, query, what)
        except _Transient as exc:
            attempts = retrying.statistics.get("attempt_number", 1)
            message = f"{what} failed after {attempts} attempt(s): {exc}"
            raise StoreError(BACKEND, self._scrub(message), transient=True) from None

    def _send_once(self, query: _Query, what: str) -> httpx.Response:
        headers = dict(self._headers)
        if query.prefer:
            headers["Prefer"] = ",".join(query.prefer)
        content = None
        if query.body is not None:
            headers["Content-Type"] = "application/json"
            content = orjson.dumps(query.body, option=orjson.OPT_NON_STR_KEYS)  # also str subclasses as keys
        try:
            response = self._http.request(query.method, f"{self._url}/rest/v1/{query.table}", params=query.params,
                                          headers=headers, content=content)
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

    def _refuse(self, message: str) -> StoreError:
        return StoreError(BACKEND, message)

    def _prepare(self, table: str, rows: Iterable[Row]) -> list[dict]:
        """JSON-ready copies of `rows`, checked column by column before anything is sent, one
        per key (see `values.TableValues.prepare`)."""
        info = values.TABLES[table]
        try:
            return [info.to_json(row) for row in info.prepare(rows)]
        except values.BadRow as bad:
            raise self._refuse(str(bad)) from None

    def _batches(self, rows: list[dict]) -> Iterator[list[dict]]:
        """Chunks whose rows all carry the same columns: an upsert sets every column the
        request names, so a row must never be sent with columns it did not have (PostgREST
        would write null into them)."""
        groups: dict[frozenset, list[dict]] = {}
        for row in rows:
            groups.setdefault(frozenset(row), []).append(row)
        for group in groups.values():
            yield from _chunks(group, self.chunk_size)

    def _upsert(self, table: str, rows: Sequence[Row]) -> None:
        prepared = self._prepare(table, rows)
        now = _now()
        for row in prepared:
            row.setdefault("updated_at", now)  # created_at: the database's default, kept on update
        required = values.TABLES[table].required
        complete = [row for row in prepared if required <= row.keys()]
        partial = [row for row in prepared if not required <= row.keys()]
        if partial:
            complete += self._complete_from_stored(table, partial)
        on_conflict = ",".join(schema.CONFLICT_KEYS[table])
        for batch in self._batches(complete):
            self._send(_upsert(table, batch, on_conflict), f"upsert of {len(batch)} row(s) into {table}")

    def _complete_from_stored(self, table: str, partial: list[dict]) -> list[dict]:
        """Rows that lack columns a new row needs can only change stored rows: read those and
        lay the given columns over them (an INSERT … ON CONFLICT checks NOT NULL before it
        looks for the conflict, so a partial row cannot go out as it is)."""
        (key,) = schema.CONFLICT_KEYS[table]
        found = self._select_in(
            table, key, [r[key] for r in partial], lambda q: q, [(key, False)], f"reading {table} to update", raw=True
        )
        stored = {row[key]: row for row in found}
        absent = [row for row in partial if row[key] not in stored]
        if absent:
            need = ", ".join(sorted(values.TABLES[table].required - absent[0].keys()))
            raise self._refuse(
                f"{table}: {len(absent)} row(s) not stored yet (first: {absent[0][key]!r}) "
                f"and cannot be inserted without {need}"
            )
        return [{**stored[row[key]], **row} for row in partial]

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
        columns: str = "*",
        raw: bool = False,
    ) -> list[Row]:
        """Every row of a query (up to `limit`), page by page in a stable order; `raw` keeps
        the JSON values as the server sent them."""
        rows: list[dict] = []
        position = offset
        while limit is None or len(rows) < limit:
            size = self.page_size if limit is None else min(self.page_size, limit - len(rows))
            query = build(_Query("GET", table, columns=columns)).order(order).page(position, size)
            page = self._rows(self._send(query, what))
            rows.extend(page)
            position += len(page)
            if len(page) < size:
                break
        return rows if raw else _decode(table, rows)

    def _select_in(
        self, table: str, column: str, values: Iterable[str], build, order, what: str, columns: str = "*", raw: bool = False
    ) -> list[Row]:
        """Rows whose `column` is one of `values`, with the list split so each URL stays short."""
        unique = sorted({str(v) for v in values})
        rows: list[Row] = []
        for part in _chunks(unique, self.in_chunk_size):
            rows.extend(self._select_all(
                table, lambda q, part=part: build(q).in_(column, part), order, what, columns=columns, raw=raw
            ))
        return rows

    # --- jobs -----------------------------------------------------------------------------

    def save_job(self, job: Row) -> None:
        self._upsert("jobs", [job])

    def get_job(self, job_id: str) -> Row:
        # A list query, not .single(): an unknown id is an empty list, not error PGRST116.
        query = _Query("GET", "jobs", columns="*").eq("job_id", job_id).where("limit", "1")
        rows = self._rows(self._send(query, f"read of job {job_id!r}"))
        if not rows:
            raise NotFound(BACKEND, f"job {job_id!r} not found")
        return _decode("jobs", rows)[0]

    def list_jobs(self, status: str | None = None, limit: int = 100, offset: int = 0) -> list[Row]:
        if limit < 0 or offset < 0:
            raise self._refuse(f"list_jobs: limit and offset must be >= 0 (got {limit}, {offset})")
        if limit == 0:
            return []

        def build(query):
            return query.eq("status", status) if status is not None else query

        return self._select_all(
            "jobs", build, [("created_at", True), ("job_id", True)], "listing jobs", limit=limit, offset=offset
        )

    def update_job(self, job_id: str, **fields: Any) -> None:
        if "job_id" in fields:
            raise self._refuse("jobs.job_id cannot be changed")
        (payload,) = self._prepare("jobs", [{**fields, "job_id": job_id}])
        payload.pop("job_id")
        payload["updated_at"] = _now()
        # return=representation (of the key only) tells whether any row matched.
        query = _Query("PATCH", "jobs", columns="job_id", body=payload, prefer=["return=representation"])
        if not self._rows(self._send(query.eq("job_id", job_id), f"update of job {job_id!r}")):
            raise NotFound(BACKEND, f"job {job_id!r} not found")

    def delete_job(self, job_id: str) -> None:
        # Runs, metrics, events and job_metrics go with it: the foreign keys cascade.
        query = _Query("DELETE", "jobs", prefer=["return=minimal"]).eq("job_id", job_id)
        self._send(query, f"delete of job {job_id!r}")

    # --- events ---------------------------------------------------------------------------

    def log_events(self, events: Sequence[Row]) -> None:
        rows = self._prepare("job_events", events)
        now = _now()
        for row in rows:
            if not row.get("job_id") or not row.get("event_type"):
                raise self._refuse("job_events: every event needs job_id and event_type")
            row.setdefault("timestamp", now)
            row.setdefault("details", {})
        for batch in self._batches(rows):
            # A plain insert is not idempotent: resent only when the server surely did nothing.
            self._send(_insert("job_events", batch), f"insert of {len(batch)} event(s)", idempotent=False)

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
        counts = dict.fromkeys(schema.RUN_STATUSES, 0)
        for status in schema.RUN_STATUSES:
            query = _Query("HEAD", "runs", columns="run_id", prefer=["count=exact"])
            response = self._send(query.eq("job_id", job_id).eq("status", status),
                                  f"counting {status} runs of job {job_id!r}")
            total = response.headers.get("content-range", "").rpartition("/")[2]
            if not total.isdigit():
                raise StoreError(BACKEND, f"counting runs: the server sent no row count (Content-Range {total!r})")
            counts[status] = int(total)
        return counts

    def completed_run_ids(self, job_id: str) -> set[str]:
        # Two key-only listings instead of whole rows: completed runs, and runs with metrics.
        done = self._select_all(
            "runs", lambda q: q.eq("job_id", job_id).eq("status", "completed"), [("run_id", False)],
            f"listing completed runs of job {job_id!r}", columns="run_id", raw=True,
        )
        measured = self._select_all(
            "metrics", lambda q: q.eq("job_id", job_id), [("run_id", False)],
            f"listing metrics of job {job_id!r}", columns="run_id", raw=True,
        )
        return {r["run_id"] for r in done} & {m["run_id"] for m in measured}

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
            raise self._refuse(f"cannot order by {order_by!r}: run_results has no such column "
                               f"(columns: {', '.join(schema.RUN_RESULTS_COLUMNS)})")
        if limit is not None and limit < 0:
            raise self._refuse(f"query_results: limit must be >= 0 (got {limit})")
        params: list[tuple[str, str]] = []
        if where is not None:
            from bilancio_pipeline.storage import filters

            expr = filters.parse_filter(where) if isinstance(where, str) else where
            params = filters.to_postgrest(expr)

        def build(query):
            if job_id is not None:
                query = query.eq("job_id", job_id)
            if regime is not None:
                query = query.eq("regime", regime)
            # The filter module wrote PostgREST's own `key=op.value` syntax with values
            # escaped; they go on the query as they are.
            for key, value in params:
                query = query.where(key, value)
            return query

        # NULLs last both ways, as the SQL store does; then a total order, so that pages
        # neither skip nor repeat rows.
        order = [(order_by, descending, "nulls last")] if order_by else []
        order += [("job_id", False), ("run_id", False)]
        if limit == 0:
            return []
        return self._select_all(RUN_RESULTS, build, order, "querying run results", limit=limit)

    # --- job metrics ----------------------------------------------------------------------

    def save_job_metrics(self, row: Row) -> None:
        self._upsert("job_metrics", [row])

    def get_job_metrics(self, job_id: str) -> Row | None:
        query = _Query("GET", "job_metrics", columns="*").eq("job_id", job_id).where("limit", "1")
        rows = self._rows(self._send(query, f"read of job metrics of {job_id!r}"))
        return _decode("job_metrics", rows)[0] if rows else None

    # --- housekeeping ---------------------------------------------------------------------

    def exposed_columns(self) -> dict[str, set[str]]:
        """The tables and views the API serves, with their columns, from the OpenAPI description
        PostgREST publishes at its root: how the schema can be checked without a database login."""
        headers = {**self._headers, "Accept": "application/openapi+json"}
        try:
            response = self._http.get(f"{self._url}/rest/v1/", headers=headers)
        except httpx.HTTPError as exc:
            raise StoreError(BACKEND, self._scrub(f"reading the API description failed: {type(exc).__name__}: {exc}")) from None
        if not response.is_success:
            raise StoreError(BACKEND, self._scrub(f"reading the API description failed: {_describe_error(response)[1]}"))
        definitions = orjson.loads(response.content).get("definitions") or {}
        return {name: set((body or {}).get("properties") or {}) for name, body in definitions.items()}


    def close(self) -> None:
        if self._owns_http:
            self._http.close()
