"""Block-style YAML for plain data (dicts, lists, str, int, float, bool, None, Decimal).

scenario.yaml is written for every run of a sweep. PyYAML's dumpers, even with libyaml
(CSafeDumper), spend 20+ ms on a 50-agent scenario because representing and resolving every
scalar happens in Python; this writer needs about 0.3 ms. It produces the layout of
`yaml.safe_dump(data, sort_keys=False)` without line folding, and quotes any string that a
YAML 1.1 loader could read as something else. The tests check that libyaml's safe loader reads
back exactly what was written, for generated data of every supported type.

Most of a scenario is long lists of records (agents, initial actions: mappings of scalars, or
of one mapping of scalars). Those are written column by column: each column's values are
formatted in one pass by type, and each record is one join of key prefixes and values (see
`_records_text`). Any other shape goes through the general emitter, which the records path
must match byte for byte (the tests compare the two).
"""

from __future__ import annotations

import json
import math
import re
from decimal import Decimal
from itertools import groupby, repeat
from operator import itemgetter
from typing import Any

import orjson

# strings written unquoted: start with a letter, "_" or "/", no YAML indicator characters and
# single inner spaces only; anything else (numbers, dates, "yes", ": ", "#", ...) is quoted
_PLAIN = re.compile(r"[A-Za-z_/][A-Za-z0-9_./()=,;+-]*(?: [A-Za-z0-9_./()=,;+-]+)*")
# the YAML 1.1 booleans and nulls a loader would not read as strings
_RESERVED = frozenset("y Y yes Yes YES n N no No NO true True TRUE false False FALSE on On ON off Off OFF null Null NULL".split())
# characters YAML does not allow raw in a stream, or reads as line breaks
_NOT_PRINTABLE = re.compile("[\x7f-\x9f\u2028\u2029\ud800-\udfff\ufffe\uffff]")

_quoted_cache: dict[str, str] = {}  # scenario strings repeat a lot (keys, kinds, agent ids)


def dump(data: dict[str, Any], *, records: bool = True) -> str:
    """YAML text of a mapping; records=False writes lists of records with the general emitter
    too (the same text, slower: for the tests that compare the two)."""
    if not data:
        return "{}\n"
    out: list[str] = []
    _emit_mapping(data, "", out, records)
    return "".join(out)


def _string(text: str) -> str:
    written = _quoted_cache.get(text)
    if written is None:
        if _PLAIN.fullmatch(text) and text not in _RESERVED:
            written = text
        else:  # a JSON string is a valid YAML double-quoted scalar once non-printables are escaped
            written = _NOT_PRINTABLE.sub(lambda m: f"\\U{ord(m.group()):08x}", json.dumps(text, ensure_ascii=False))
        if len(_quoted_cache) >= 50_000:  # a long sweep over many sizes: keep the recent strings
            _quoted_cache.clear()
        _quoted_cache[text] = written
    return written


def _float(value: float) -> str:
    text = repr(value)
    if "e" in text or "n" in text:  # exponent, inf or nan
        if value != value:
            return ".nan"
        if math.isinf(value):
            return ".inf" if value > 0 else "-.inf"
        if "." not in text:  # YAML 1.1 reads 1e-08 as a string, 1.0e-08 as a float
            text = text.replace("e", ".0e")
    return text


def number_texts(values: list[Any] | tuple[Any, ...]) -> list[str] | None:
    """str() of each value (for a float that is its repr) when every value is an int or a
    float, of exactly those types, written without an exponent; else None.

    repr costs about half a microsecond for a float of 17 digits; one orjson call for the
    whole list finds the same shortest round-trip digits (Ryu) several times faster, and
    writes ints as str() does. Anything else shows in orjson's text and is refused: strings
    ('"'), containers ("[", "{"), true/false/null ("e", "n"), exponents ("e"; orjson also
    writes 1e-05 as 0.00001, hence "0.0000", which refuses a harmless 10.00001 too), and
    subclasses (OPT_PASSTHROUGH_SUBCLASS makes orjson raise for them, as for NumPy scalars
    and ints beyond 64 bits). The CSV artifacts use it too: csv writes numbers the same way."""
    if not values:
        return []
    try:
        text = orjson.dumps(values, option=orjson.OPT_PASSTHROUGH_SUBCLASS).decode()[1:-1]
    except orjson.JSONEncodeError:
        return None
    if '"' in text or "e" in text or "n" in text or "[" in text or "{" in text or "0.0000" in text:
        return None
    return text.split(",")


def _decimal(value: Decimal) -> str:
    if not value.is_finite():
        return _float(float(value))
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")  # every digit, never exponent notation


def _scalar(value: Any) -> str:
    kind = type(value)
    if kind is str:
        return _string(value)
    if kind is int:
        return str(value)
    if kind is float:
        return _float(value)
    if kind is bool:
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, Decimal):
        return _decimal(value)
    if isinstance(value, (bool, int, float, str)):  # subclasses, e.g. NumPy's float64
        return _scalar(_base(value))
    if hasattr(value, "item"):  # NumPy scalars
        return _scalar(value.item())
    raise TypeError(f"cannot write {kind.__name__} to YAML")


def _base(value: Any) -> Any:
    for base in (bool, int, float, str):
        if isinstance(value, base):
            return base(value)
    return value


def _as_container(value: Any) -> dict | list | None:
    """The value as a dict or list if it is a container (tuples and sets become lists), else None."""
    if isinstance(value, dict):
        return value
    if isinstance(value, (list, tuple, set, frozenset)):
        return list(value)
    return None


def _emit_mapping(data: dict[Any, Any], pad: str, out: list[str], records: bool) -> None:
    append = out.append
    cached = _quoted_cache.get
    for key, value in data.items():
        key_text = (cached(key) or _string(key)) if type(key) is str else _scalar(key)
        kind = type(value)
        # the common scalars inline: this loop runs for every field of every initial action
        if kind is str:
            append(f"{pad}{key_text}: {cached(value) or _string(value)}\n")
            continue
        if kind is int:
            append(f"{pad}{key_text}: {value}\n")
            continue
        if kind is float:
            append(f"{pad}{key_text}: {_float(value)}\n")
            continue
        if kind is not dict and kind is not list:
            container = _as_container(value)
            if container is None:
                append(f"{pad}{key_text}: {_scalar(value)}\n")
                continue
            value = container
        if not value:
            append(f"{pad}{key_text}: {{}}\n" if type(value) is dict else f"{pad}{key_text}: []\n")
        elif type(value) is dict:
            append(f"{pad}{key_text}:\n")
            _emit_mapping(value, pad + "  ", out, records)
        else:
            append(f"{pad}{key_text}:\n")
            _emit_sequence(value, pad, out, records)


def _emit_sequence(data: list[Any], pad: str, out: list[str], records: bool) -> None:
    if records and len(data) > 1:
        text = _records_text(data, pad + "- ", pad + "  ")
        if text is not None:
            out.append(text)
            return
    append = out.append
    inner = pad + "  "
    dash = pad + "- "
    cut = len(inner)
    for value in data:
        container = value if type(value) is dict else _as_container(value)
        if container is None:
            append(f"{dash}{_scalar(value)}\n")
        elif not container:
            append(dash + ("{}\n" if type(container) is dict else "[]\n"))
        else:
            # write the item one level deeper, then turn its first line's indent into "- "
            start = len(out)
            if type(container) is dict:
                _emit_mapping(container, inner, out, records)
            else:
                _emit_sequence(container, inner, out, records)
            out[start] = dash + out[start][cut:]


# ---------------------------------------------------------------------------------------------
# lists of records, column by column

_CONTAINERS = (dict, list, tuple, set, frozenset)


def _records_text(items: list[Any], dash: str, inner: str) -> str | None:
    """The sequence's text when it is all scalars or all records (see `_mapping_texts`), else None.

    A value that cannot be written also gives None: the general emitter then raises for the
    first such value in document order."""
    try:
        if type(items[0]) is dict and set(map(type, items)) == {dict}:
            texts = _mapping_texts(items, dash, inner)
            return None if texts is None else "\n".join(texts) + "\n"
        texts = _scalar_texts(items)
    except TypeError:
        return None
    if texts is None:
        return None
    return dash + f"\n{dash}".join(texts) + "\n"


def _mapping_texts(
    maps: list[dict[Any, Any]] | tuple[dict[Any, Any], ...], first: str, rest: str, shapes: list[tuple] | None = None
) -> list[str] | None:
    """Each mapping's text without its final line break, its first line indented by `first`
    and the others by `rest`, when every value is a scalar or a non-empty mapping of the same
    kind; else None.

    Mappings with the same keys in the same order are written together: the values of one key
    are formatted in one pass, then each record is one join of (key prefix, value) pieces.
    `shapes` are the mappings' key tuples, when the caller has them already."""
    if shapes is None:
        shapes = list(map(tuple, maps))
    shape = shapes[0]
    if shapes.count(shape) != len(shapes):
        return _mixed_mapping_texts(maps, shapes, first, rest)
    if not shape:
        return None  # "{}" items: the general emitter's job
    # the values key by key: one pass for the rows, one to transpose them
    columns = zip(*map(itemgetter(*shape), maps)) if len(shape) > 1 else [list(map(itemgetter(shape[0]), maps))]
    pieces: list[Any] = []
    for position, (key, values) in enumerate(zip(shape, columns)):
        lead = first if position == 0 else "\n" + rest
        key_text = _string(key) if type(key) is str else _scalar(key)
        if type(values[0]) is dict and set(map(type, values)) == {dict}:
            texts = _mapping_texts(values, rest + "  ", rest + "  ")
            prefix = f"{lead}{key_text}:\n"
        else:
            texts = _scalar_texts(values)
            prefix = f"{lead}{key_text}: "
        if texts is None:
            return None
        if len(shape) == 1:  # one key (an action's kind): no need for a join per record
            return list(map(prefix.__add__, texts))
        pieces += (repeat(prefix), texts)
    return list(map("".join, zip(*pieces)))


def _mixed_mapping_texts(maps: list[dict[Any, Any]], shapes: list[tuple], first: str, rest: str) -> list[str] | None:
    """`_mapping_texts` for mappings of several shapes, one run of equal shapes at a time (a
    scenario's actions come in long runs: mints, then payables); None if the runs are short."""
    runs = [(shape, sum(1 for _ in run)) for shape, run in groupby(shapes)]
    if len(runs) > 8 and len(runs) * 4 > len(maps):
        return None
    texts: list[str] = []
    start = 0
    for shape, length in runs:
        part = _mapping_texts(maps[start : start + length], first, rest, [shape] * length)
        if part is None:
            return None
        texts += part
        start += length
    return texts


def _scalar_texts(values: list[Any] | tuple[Any, ...]) -> list[str] | None:
    """The values as YAML scalars, or None if one is a container (or cannot be written)."""
    first = type(values[0])
    if first is str:
        try:
            texts = list(map(_quoted_cache.get, values))
        except TypeError:  # an unhashable value: a container
            return None
        # a miss is None; a hit is never "" (the empty string is written quoted)
        if all(texts):
            return texts
    elif first is int or first is float:
        texts = number_texts(values)  # a YAML int or float is its str()/repr() unless exponents are involved
        if texts is not None:
            return texts
    kinds = set(map(type, values))
    if kinds == {str}:
        return list(map(_string, values))
    if any(issubclass(kind, _CONTAINERS) for kind in kinds):
        return None
    if kinds == {float}:
        return list(map(_float, values))
    return list(map(_scalar, values))
