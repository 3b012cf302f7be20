"""Block-style YAML for plain data (dicts, lists, str, int, float, bool, None, Decimal).

scenario.yaml is written for every run of a sweep. PyYAML's dumpers, even with libyaml
(CSafeDumper), spend 20+ ms on a 50-agent scenario because representing and resolving every
scalar happens in Python; this writer needs about 1 ms. It produces the layout of
`yaml.safe_dump(data, sort_keys=False)` without line folding, and quotes any string that a
YAML 1.1 loader could read as something else. The tests check that libyaml's safe loader reads
back exactly what was written, for generated data of every supported type.
"""

from __future__ import annotations

import json
import math
import re
from decimal import Decimal
from typing import Any

# strings written unquoted: start with a letter, "_" or "/", no YAML indicator characters and
# single inner spaces only; anything else (numbers, dates, "yes", ": ", "#", ...) is quoted
_PLAIN = re.compile(r"[A-Za-z_/][A-Za-z0-9_./()=,;+-]*(?: [A-Za-z0-9_./()=,;+-]+)*")
# the YAML 1.1 booleans and nulls a loader would not read as strings
_RESERVED = frozenset("y Y yes Yes YES n N no No NO true True TRUE false False FALSE on On ON off Off OFF null Null NULL".split())
# characters YAML does not allow raw in a stream, or reads as line breaks
_NOT_PRINTABLE = re.compile("[\x7f-\x9f\u2028\u2029\ud800-\udfff\ufffe\uffff]")

_quoted_cache: dict[str, str] = {}  # scenario strings repeat a lot (keys, kinds, agent ids)


def dump(data: dict[str, Any]) -> str:
    """YAML text of a mapping."""
    if not data:
        return "{}\n"
    out: list[str] = []
    _emit_mapping(data, "", out)
    return "".join(out)


def _string(text: str) -> str:
    written = _quoted_cache.get(text)
    if written is None:
        if _PLAIN.fullmatch(text) and text not in _RESERVED:
            written = text
        else:  # a JSON string is a valid YAML double-quoted scalar once non-printables are escaped
            written = _NOT_PRINTABLE.sub(lambda m: f"\\U{ord(m.group()):08x}", json.dumps(text, ensure_ascii=False))
        if len(_quoted_cache) < 10_000:
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


def _emit_mapping(data: dict[Any, Any], pad: str, out: list[str]) -> None:
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
            _emit_mapping(value, pad + "  ", out)
        else:
            append(f"{pad}{key_text}:\n")
            _emit_sequence(value, pad, out)


def _emit_sequence(data: list[Any], pad: str, out: list[str]) -> None:
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
                _emit_mapping(container, inner, out)
            else:
                _emit_sequence(container, inner, out)
            out[start] = dash + out[start][cut:]
