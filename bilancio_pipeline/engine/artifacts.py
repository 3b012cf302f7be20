"""Write one run's artifacts (MODEL.md section 6) into a folder, and read them back.

Writing is on the hot path of every sweep run (about a millisecond and a half for a passive
run at n_agents 50), so every file is built in memory with orjson, a small YAML writer or
direct joins (the csv module where a cell needs quoting) and written with one system call;
no template engine or plotting library is involved, and the HTML pages are drawn by the
browser from embedded JSON (run_report.py).

Reading is for verifying and reloading runs later: every reader raises `ArtifactCorrupt`,
whose message names the file and, where it applies, the line.
"""

from __future__ import annotations

import csv
import gzip
import io
import operator
import os
import re
import zlib
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import yaml

from bilancio_pipeline.engine import plain_yaml
from bilancio_pipeline.engine.output import SimulationOutput
from bilancio_pipeline.engine.run_report import json_default as _json_default
from bilancio_pipeline.engine.run_report import render_metrics_html, render_run_html

# What a run keeps, chosen per sweep: every file, every file but the event log (the largest),
# or no files at all (its rows in the store remain).
ARTIFACT_POLICIES = ("all", "summary", "none")

# artifact name -> path relative to the run folder (names as the original system's results use)
ARTIFACT_PATHS = {
    "scenario_yaml": "scenario.yaml",
    "events_jsonl": "out/events.jsonl",
    "balances_csv": "out/balances.csv",
    "metrics_csv": "out/metrics.csv",
    "metrics_json": "out/metrics.json",
    "debtor_shares_csv": "out/debtor_shares.csv",
    "intraday_csv": "out/intraday.csv",
    "dealer_metrics_json": "out/dealer_metrics.json",
    "metrics_html": "out/metrics.html",
    "run_html": "run.html",
}

BALANCE_COLUMNS = (
    "agent_id",
    "agent_kind",
    "agent_name",
    "amount",
    "assets_cash",
    "assets_payable",
    "item_name",
    "item_type",
    "liabilities_cash",
    "liabilities_payable",
    "net_financial",
    "total_financial_assets",
    "total_financial_liabilities",
    "total_inventory_value",
    "total_nonfinancial_value",
)

# sorted() order, which is how the columns of metrics.csv are laid out
DAY_METRIC_COLUMNS = tuple(
    sorted(
        (
            "G_t",
            "HHIplus_t",
            "M_t",
            "Mbar_t",
            "Mpeak_t",
            "S_t",
            "alpha_t",
            "day",
            "delta_t",
            "gross_settled_t",
            "n_creditors",
            "n_debtors",
            "notes",
            "phi_t",
            "v_t",
        )
    )
)

DEBTOR_SHARE_COLUMNS = ("DS_t", "agent", "day")
INTRADAY_COLUMNS = ("P_prefix", "amount", "day", "payee", "payer", "step")

EVENT_REQUIRED_KEYS = ("kind", "day", "phase")

# The data files are kept gzip-compressed, as `<path>.gz`: the event log shrinks about tenfold.
# A large file (the event log) gets level 1, under a millisecond per run at n_agents 50 (level 6
# saves a quarter more for three times the CPU); the small ones level 6, which costs little on
# a few kilobytes. zlib's gzip header carries no time stamp, so a run gives the same bytes each
# time. The HTML pages stay plain so that a browser opens them from a folder.
COMPRESSED = frozenset(name for name, path in ARTIFACT_PATHS.items() if not path.endswith(".html"))
GZIP_SUFFIX = ".gz"
FAST_LEVEL_ABOVE = 64 * 1024  # bytes

_JSON_FLAGS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
_JSON_DOC = orjson.OPT_INDENT_2 | _JSON_FLAGS


class ArtifactCorrupt(ValueError):
    """An artifact is missing, truncated or malformed; the message names the file and line."""

    def __init__(self, file: str, problem: str, line: int | None = None):
        self.file = file
        self.line = line
        self.problem = problem
        where = f"{file}, line {line}" if line is not None else file
        super().__init__(f"corrupt artifact {where}: {problem}")


# ---------------------------------------------------------------------------------------------
# writing


def write_artifacts(output: SimulationOutput, out_dir: Path, policy: str = "all",
                    compress: bool = True) -> dict[str, str]:
    """Write the artifacts the policy keeps under out_dir (the data files gzip-compressed
    unless compress is False); returns {artifact name: path relative to out_dir}."""
    names = artifact_names(policy)
    if not names:
        return {}
    out_dir = os.fspath(out_dir)
    _make_run_folders(out_dir)
    written = {}
    for name, data in _render_buffers(output, names).items():
        path = stored_path(name) if compress else ARTIFACT_PATHS[name]
        _write_file(os.path.join(out_dir, path), gzip_bytes(data) if path.endswith(GZIP_SUFFIX) else data)
        written[name] = path
    return written


def artifact_names(policy: str) -> tuple[str, ...]:
    """The artifacts a run keeps under an artifact policy."""
    if policy not in ARTIFACT_POLICIES:
        raise ValueError(f"artifact policy {policy!r} must be one of {', '.join(ARTIFACT_POLICIES)}")
    if policy == "none":
        return ()
    return tuple(name for name in ARTIFACT_PATHS if policy == "all" or name != "events_jsonl")


def stored_path(name: str) -> str:
    """Where an artifact is kept in a run folder: its path, with GZIP_SUFFIX if compressed."""
    return ARTIFACT_PATHS[name] + GZIP_SUFFIX if name in COMPRESSED else ARTIFACT_PATHS[name]


def gzip_bytes(data: bytes | memoryview) -> bytes:
    """A gzip member (no file name, time stamp 0), as `gzip -1` or `gzip -6` would write it."""
    return zlib.compress(data, 1 if len(data) > FAST_LEVEL_ABOVE else 6, wbits=31)


def _make_run_folders(out_dir: str) -> None:
    """out_dir and out_dir/out. A mkdir is a journaled metadata write, among the costliest
    system calls of a run on a busy disk, so the common case (a fresh run folder under an
    existing parent) makes exactly two; Path.mkdir(parents=True) would first fail on out/,
    then make out_dir, then retry."""
    out = os.path.join(out_dir, "out")
    try:
        os.mkdir(out_dir)
    except FileExistsError:
        pass
    except FileNotFoundError:
        os.makedirs(out_dir, exist_ok=True)
    try:
        os.mkdir(out)
    except FileExistsError:
        if not os.path.isdir(out):
            raise


def render_artifacts(output: SimulationOutput) -> dict[str, bytes]:
    """The content of every artifact, in memory and uncompressed: {artifact name: bytes}.

    A day row may carry helper lists under keys starting with "_" (`_debtor_shares`,
    `_intraday`); they go to their own CSV files, not into metrics.csv/json."""
    buffers = _render_buffers(output, tuple(ARTIFACT_PATHS))
    return {name: data if type(data) is bytes else bytes(data) for name, data in buffers.items()}


def _render_buffers(output: SimulationOutput, names: tuple[str, ...]) -> dict[str, bytes | memoryview]:
    """The named artifacts' content, with events.jsonl as the buffer it was built in (copying
    half a megabyte into a bytes object costs more than writing it)."""
    days = public_day_rows(output.day_metrics)
    debtor_shares = [share for row in output.day_metrics for share in row.get("_debtor_shares", ())]
    intraday = [step for row in output.day_metrics for step in row.get("_intraday", ())]
    render = {
        "scenario_yaml": lambda: scenario_yaml(output).encode(),
        "events_jsonl": lambda: events_jsonl_buffer(output.events),
        "balances_csv": lambda: csv_text(output.balances, BALANCE_COLUMNS).encode(),
        "metrics_csv": lambda: csv_text(days, day_metric_columns(days)).encode(),
        "metrics_json": lambda: orjson.dumps(days, default=_json_default, option=_JSON_DOC),
        "debtor_shares_csv": lambda: csv_text(debtor_shares, DEBTOR_SHARE_COLUMNS).encode(),
        "intraday_csv": lambda: csv_text(intraday, INTRADAY_COLUMNS).encode(),
        "dealer_metrics_json": lambda: orjson.dumps(output.dealer_metrics, default=_json_default, option=_JSON_DOC),
        "metrics_html": lambda: render_metrics_html(output, days, debtor_shares, intraday),
        "run_html": lambda: render_run_html(output, days),
    }
    return {name: render[name]() for name in names}


def _write_file(path: str, data: bytes | memoryview) -> None:
    # plain os calls: a third cheaper than Path.write_bytes for ten small files per run
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def public_day_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The day rows as metrics.csv/json hold them: no helper keys (those starting with "_"),
    and NaN as None, so that both files say "no value" the same way."""
    return [{k: (None if type(v) is float and v != v else v) for k, v in row.items() if k[:1] != "_"} for row in rows]


def scenario_yaml(output: SimulationOutput) -> str:
    """The compiled scenario, plus the cash accounting that produced the run."""
    scenario = dict(output.scenario)
    scenario.setdefault("cash_accounting", output.params.cash_accounting)
    return plain_yaml.dump(scenario)


def events_jsonl(events: list[dict[str, Any]]) -> bytes:
    """One compact JSON object per line."""
    return bytes(events_jsonl_buffer(events))


def events_jsonl_buffer(events: list[dict[str, Any]]) -> bytes | memoryview:
    """events.jsonl's content, as bytes or a view of the buffer it was built in.

    orjson costs a few microseconds per call but almost nothing per event, so the whole list
    is dumped at once and the commas between objects become line breaks. That is only
    trusted when every event is a dict and "},{" occurs exactly at the n-1 boundaries (no
    string or nested list of objects contains it); otherwise each event is dumped on its own."""
    if not events:
        return b""
    if set(map(type, events)) == {dict}:
        try:  # orjson's fast path; OPT_NON_STR_KEYS alone makes dumping three times slower
            whole = orjson.dumps(events, default=_json_default)
        except orjson.JSONEncodeError:
            whole = orjson.dumps(events, default=_json_default, option=_JSON_FLAGS)
        lines = _one_object_per_line(whole, len(events))
        if lines is not None:
            return lines
    dumps = orjson.dumps
    option = _JSON_FLAGS | orjson.OPT_APPEND_NEWLINE
    return b"".join([dumps(event, default=_json_default, option=option) for event in events])


def _one_object_per_line(array: bytes, count: int) -> memoryview | None:
    """The JSON array of `count` objects with each "},{" between them turned into "}\\n{", the
    "[" dropped and the "]" turned into the last line break; None if "},{" occurs elsewhere.

    NumPy finds the separators (from the few "}", not the many ",") and rewrites them in one
    copy, in a few vectorised passes: bytes.replace plus a count to check it cost three times
    as much (a tenth of a millisecond per 800 events).
    orjson escapes line breaks inside strings, so every "\\n" of the result is a separator."""
    import numpy  # already loaded by the dealer model in any worker that runs the active regime

    text = numpy.frombuffer(array, dtype=numpy.uint8)
    closes = numpy.flatnonzero(text[:-2] == ord("}"))  # far fewer than the commas
    separators = closes[(text[closes + 1] == ord(",")) & (text[closes + 2] == ord("{"))] + 1
    if len(separators) != count - 1:
        return None
    lines = text.copy()  # numpy's copy of a large buffer is cheaper than bytearray's
    lines[separators] = ord("\n")
    lines[-1] = ord("\n")
    return memoryview(lines)[1:]


def day_metric_columns(rows: list[dict[str, Any]]) -> list[str]:
    keys: set[str] = set()
    for row in rows:
        keys.update(row)
    return sorted(keys) if keys else list(DAY_METRIC_COLUMNS)


def csv_text(rows: list[dict[str, Any]], columns: tuple[str, ...] | list[str]) -> str:
    """CSV with a header; a missing value or None is an empty cell, a Decimal keeps its digits.

    The text is what the csv module writes (QUOTE_MINIMAL, "\\n" line ends); rows of plain
    values that need no quoting are joined directly, column by column, which is several
    times faster."""
    if len(columns) > 1 and rows:
        try:
            records = list(map(operator.itemgetter(*columns), rows))  # C speed when every row has every column
        except KeyError:
            records = None
        if records is not None:
            text = _joined_csv(records, columns)
            if text is not None:
                return text
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([[row.get(column) for column in columns] for row in rows])
    return buffer.getvalue()


_PLAIN_CELL_KINDS = frozenset((int, float, str, bool, type(None), Decimal))


def _joined_csv(records: list[tuple[Any, ...]], columns: tuple[str, ...] | list[str]) -> str | None:
    """The csv module's text for these records, or None where a cell would need quoting or is
    of a type whose csv text is not simply str() (NumPy scalars, subclasses)."""
    cells = []
    for values in zip(*records):
        texts = _cell_texts(values)
        if texts is None:
            return None
        cells.append(texts)
    text = ",".join(columns) + "\n" + "\n".join(map(",".join, zip(*cells))) + "\n"
    # a cell with a comma, quote or line break would be quoted by csv: the counts would differ
    lines = len(records) + 1
    if '"' in text or "\r" in text or text.count("\n") != lines or text.count(",") != lines * (len(columns) - 1):
        return None
    return text


def _cell_texts(values: tuple[Any, ...]) -> tuple[str, ...] | list[str] | None:
    """One column's cells as csv writes them: a str as it is, None as "", a float as its repr,
    anything else (int, bool, Decimal) as str(); None for any other type."""
    first = type(values[0])
    if first is int or first is float:
        texts = plain_yaml.number_texts(values)
        if texts is not None:
            return texts
    kinds = set(map(type, values))
    if kinds == {str}:
        return values
    if not kinds <= _PLAIN_CELL_KINDS:
        return None
    if type(None) in kinds:
        return ["" if value is None else str(value) for value in values]
    return list(map(str, values))  # str(float) is its repr; str(Decimal) keeps every digit, as csv writes it


# ---------------------------------------------------------------------------------------------
# reading


@dataclass
class RunArtifacts:
    """One run's artifacts, parsed back."""

    scenario: dict[str, Any]
    events: list[dict[str, Any]]
    balances: list[dict[str, Any]]
    day_metrics: list[dict[str, Any]]
    debtor_shares: list[dict[str, Any]]
    intraday: list[dict[str, Any]]
    dealer_metrics: dict[str, Any]


def read_run_artifacts(run_dir: Path) -> RunArtifacts:
    """Read and check the data artifacts of one run folder (the HTML reports are not parsed)."""
    run_dir = Path(run_dir)

    def path(name: str) -> tuple[Path, str]:
        return run_dir / ARTIFACT_PATHS[name], ARTIFACT_PATHS[name]

    day_metrics = read_day_metrics_json(*path("metrics_json"))
    day_metrics_csv = read_csv_rows(*path("metrics_csv"), required=("day",))
    if len(day_metrics_csv) != len(day_metrics):
        raise ArtifactCorrupt(
            ARTIFACT_PATHS["metrics_csv"], f"{len(day_metrics_csv)} day rows, but metrics.json has {len(day_metrics)}"
        )
    return RunArtifacts(
        scenario=read_scenario(*path("scenario_yaml")),
        events=read_events(*path("events_jsonl")),
        balances=read_csv_rows(*path("balances_csv"), required=BALANCE_COLUMNS),
        day_metrics=day_metrics,
        debtor_shares=read_csv_rows(*path("debtor_shares_csv"), required=DEBTOR_SHARE_COLUMNS),
        intraday=read_csv_rows(*path("intraday_csv"), required=INTRADAY_COLUMNS),
        dealer_metrics=read_json_object(*path("dealer_metrics_json")),
    )


def read_scenario(path: Path, name: str | None = None) -> dict[str, Any]:
    name = name or str(path)
    text = _read_text(path, name)
    try:
        scenario = yaml.load(text, Loader=yaml.CSafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise ArtifactCorrupt(name, f"invalid YAML: {exc.problem or exc.context}", line) from None
    except yaml.YAMLError as exc:
        raise ArtifactCorrupt(name, f"invalid YAML: {exc}") from None
    if not isinstance(scenario, dict):
        raise ArtifactCorrupt(name, "expected a mapping at the top level")
    missing = [key for key in ("version", "agents", "initial_actions", "run") if key not in scenario]
    if missing:
        raise ArtifactCorrupt(name, f"missing key(s) {', '.join(missing)}")
    return scenario


def read_events(path: Path, name: str | None = None) -> list[dict[str, Any]]:
    name = name or str(path)
    data = _read_bytes(path, name)
    if not data:
        return []
    lines = data.split(b"\n")
    if lines[-1] != b"":
        raise ArtifactCorrupt(name, "last line has no line ending (the file was cut short)", len(lines))
    events = []
    loads = orjson.loads
    for number, line in enumerate(lines[:-1], start=1):
        try:
            event = loads(line)
        except orjson.JSONDecodeError as exc:
            raise ArtifactCorrupt(name, f"invalid JSON ({exc.msg})", number) from None
        if not isinstance(event, dict):
            raise ArtifactCorrupt(name, "expected a JSON object", number)
        if "kind" not in event or "day" not in event or "phase" not in event:
            missing = [key for key in EVENT_REQUIRED_KEYS if key not in event]
            raise ArtifactCorrupt(name, f"event without {', '.join(missing)}", number)
        events.append(event)
    return events


def read_csv_rows(path: Path, name: str | None = None, required: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Rows of a CSV artifact, numbers parsed back to int/float and empty cells to None."""
    name = name or str(path)
    text = _read_text(path, name)
    try:
        records = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise ArtifactCorrupt(name, f"invalid CSV ({exc})") from None
    if not records:
        raise ArtifactCorrupt(name, "empty file, expected a header line", 1)
    header = records[0]
    missing = [column for column in required if column not in header]
    if missing:
        raise ArtifactCorrupt(name, f"header lacks column(s) {', '.join(missing)}", 1)
    if not text.endswith("\n"):
        raise ArtifactCorrupt(name, "last line has no line ending (the file was cut short)", len(records))
    rows = []
    for number, record in enumerate(records[1:], start=2):
        if len(record) != len(header):
            raise ArtifactCorrupt(name, f"expected {len(header)} fields, found {len(record)}", number)
        rows.append({column: _scalar(cell) for column, cell in zip(header, record)})
    return rows


def read_day_metrics_json(path: Path, name: str | None = None) -> list[dict[str, Any]]:
    name = name or str(path)
    rows = _parse_json(path, name)
    if not isinstance(rows, list) or not all(isinstance(row, dict) and "day" in row for row in rows):
        raise ArtifactCorrupt(name, "expected a list of day rows, each with a day")
    return rows


def read_json_object(path: Path, name: str | None = None) -> dict[str, Any]:
    name = name or str(path)
    data = _parse_json(path, name)
    if not isinstance(data, dict):
        raise ArtifactCorrupt(name, "expected a JSON object")
    return data


def _parse_json(path: Path, name: str) -> Any:
    data = _read_bytes(path, name)
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ArtifactCorrupt(name, f"invalid JSON ({exc.msg})", exc.lineno) from None


_NUMBER = re.compile(r"-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _scalar(cell: str) -> Any:
    if cell == "":
        return None
    if _NUMBER.fullmatch(cell):
        try:
            return int(cell)
        except ValueError:
            return float(cell)
    return cell


def _read_bytes(path: Path, name: str) -> bytes:
    """The file's content; a file kept compressed (`<path>.gz`) is read back decompressed."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise ArtifactCorrupt(name, f"cannot be read ({exc.strerror})") from None
    try:
        return gzip.decompress(Path(f"{os.fspath(path)}{GZIP_SUFFIX}").read_bytes())
    except FileNotFoundError:
        raise ArtifactCorrupt(name, "file is missing") from None
    except OSError as exc:  # gzip.BadGzipFile is an OSError too
        raise ArtifactCorrupt(name, f"cannot be read ({exc.strerror or exc})") from None
    except (EOFError, zlib.error) as exc:
        raise ArtifactCorrupt(name, f"compressed data is cut short or damaged ({exc})") from None


def _read_text(path: Path, name: str) -> str:
    data = _read_bytes(path, name)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ArtifactCorrupt(name, "not valid UTF-8 text", line) from None
