"""A small filter language over run parameters and metrics, e.g.

    kappa < 0.5 and delta_total > 0.1
    (regime = 'active' or mu >= 1) and not error != null

Comparisons are `column op value` with op one of < <= > >= = != (== and <> are accepted as
aliases) and value a number, a quoted string ('…' or "…", a doubled quote inside is one quote),
true, false or null (`= null` / `!= null` mean IS NULL / IS NOT NULL). `and` binds tighter than
`or`; `not` and parentheses work as usual; keywords are case-insensitive.

The text is parsed into a tree of frozen dataclasses (`Compare`, `And`, `Or`, `Not`) and every
backend builds its own query from that tree with the values as data: bound parameters in SQL
(`to_sqlalchemy`), quoted values in PostgREST filters (`to_postgrest`). Nothing the user typed
is ever pasted into query text, and any mistake is a `FilterError` that points at it.
"""

from __future__ import annotations

import difflib
import functools
import operator
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Union

import lark
from sqlalchemy import and_, not_, or_

from bilancio_pipeline.storage import schema

MAX_LENGTH = 10_000
MAX_DEPTH = 64  # nesting deeper than this is certainly a mistake; it also keeps SQL compilers safe

Value = Union[int, float, str, bool, None]


class FilterError(ValueError):
    """A filter expression that cannot be used; the message shows where the mistake is."""

    def __init__(self, message: str, text: str = "", position: int | None = None, hint: str = ""):
        self.reason = message
        self.text = text
        self.position = position
        if position is not None and text:
            line = text.replace("\n", " ").replace("\t", " ")
            message = f"{message} (at position {position + 1})\n  {line}\n  {' ' * position}^"
        if hint:
            message = f"{message}\n{hint}"
        super().__init__(message)


@dataclass(frozen=True)
class Compare:
    column: str
    op: str  # one of OPS
    value: Value


@dataclass(frozen=True)
class And:
    items: tuple[Expr, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Expr, ...]


@dataclass(frozen=True)
class Not:
    item: Expr


Expr = Union[Compare, And, Or, Not]

OPS = ("<", "<=", ">", ">=", "=", "!=")
# The same operator functions build SQL clauses (on columns) and evaluate rows (on values).
_PY_OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "=": operator.eq, "!=": operator.ne}
_OP_ALIASES = {"==": "=", "<>": "!="}

# Keywords are regexes with a word boundary so that a column such as `notes` is not read as
# `not` + `es`; their priority beats the column-name pattern where both could match.
_GRAMMAR = r"""
?start: or_expr
?or_expr: and_expr (_OR and_expr)*
?and_expr: not_expr (_AND not_expr)*
?not_expr: _NOT not_expr -> negation
         | atom
?atom: comparison
     | "(" or_expr ")"
comparison: COLUMN OP value
?value: NUMBER -> number
      | STRING -> string
      | TRUE -> true
      | FALSE -> false
      | NULL -> null
      | COLUMN -> bare_word

_OR.2: /or\b/i
_AND.2: /and\b/i
_NOT.2: /not\b/i
TRUE.2: /true\b/i
FALSE.2: /false\b/i
NULL.2: /null\b/i
COLUMN: /[A-Za-z_][A-Za-z0-9_]*/
OP: "<=" | ">=" | "!=" | "<>" | "==" | "<" | ">" | "="
NUMBER: /[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?/
STRING: /'([^']|'')*'/ | /"([^"]|"")*"/

%import common.WS
%ignore WS
"""


@functools.cache
def _parser() -> lark.Lark:
    # Built on first use (tens of milliseconds), so commands that never filter do not pay for it.
    return lark.Lark(_GRAMMAR, parser="lalr", propagate_positions=True, maybe_placeholders=False)


_TOKEN_NAMES = {
    "COLUMN": "a column name", "OP": "a comparison (< <= > >= = !=)", "NUMBER": "a number",
    "STRING": "a quoted string", "TRUE": "true", "FALSE": "false", "NULL": "null",
    "_OR": "or", "_AND": "and", "_NOT": "not", "LPAR": "(", "RPAR": ")", "$END": "the end",
}

_INT64 = 2**63


def column_kinds(columns: Iterable[str] = schema.RUN_RESULTS_COLUMNS) -> dict[str, str]:
    """Column name -> "number", "text", "bool" or "any", from the tables that hold the column."""
    kinds = {}
    for name in columns:
        kind = "any"
        for table in (schema.runs, schema.metrics, schema.jobs):
            if name in table.c:
                python_type = _python_type(table.c[name])
                if python_type in (int, float):
                    kind = "number"
                elif python_type is str:
                    kind = "text"
                elif python_type is bool:
                    kind = "bool"
                break
        kinds[name] = kind
    return kinds


def _python_type(column) -> type | None:
    try:
        return column.type.python_type
    except NotImplementedError:
        return None


def _describe(token_type: str) -> str:
    return _TOKEN_NAMES.get(token_type, token_type.strip("_").lower())


def _syntax_error(exc: lark.exceptions.UnexpectedInput, text: str) -> FilterError:
    position = getattr(exc, "pos_in_stream", None)
    if isinstance(exc, lark.exceptions.UnexpectedToken) and exc.token.type == "$END":
        position = len(text.rstrip())
    if position is None:
        position = len(text.rstrip())
    expected = set(getattr(exc, "expected", None) or getattr(exc, "allowed", None) or ())
    if "NUMBER" in expected:
        expected.discard("COLUMN")  # a bare word is only accepted there to explain the quoting
    expected = sorted(_describe(t) for t in expected)
    if isinstance(exc, lark.exceptions.UnexpectedCharacters):
        what = f"unexpected character {text[position]!r}"
    elif isinstance(exc, lark.exceptions.UnexpectedToken) and exc.token.type != "$END":
        what = f"unexpected {str(exc.token)!r}"
    else:
        what = "the expression ends too early"
    hint = f"; expected {', '.join(expected)}" if expected else ""
    return FilterError(f"{what}{hint}", text, min(position, len(text)))


class _ToAst(lark.visitors.Transformer_NonRecursive):
    """Builds the dataclass tree and checks columns and value types, pointing at mistakes."""

    def __init__(self, text: str, kinds: Mapping[str, str]):
        super().__init__()
        self.text = text
        self.kinds = kinds

    def number(self, items):
        (token,) = items
        if any(c in token for c in ".eE"):
            return token, float(token)
        value = int(token)
        return token, value if -_INT64 <= value < _INT64 else float(value)

    def string(self, items):
        (token,) = items
        quote = token[0]
        return token, token[1:-1].replace(quote * 2, quote)

    def true(self, items):
        return items[0], True

    def false(self, items):
        return items[0], False

    def null(self, items):
        return items[0], None

    def bare_word(self, items):
        (token,) = items
        raise FilterError(f"{str(token)!r} is not a value; quote text, as in '{token}'", self.text, token.start_pos)

    def comparison(self, items):
        column, op_token, (value_token, value) = items
        name = str(column)
        if name not in self.kinds:
            close = difflib.get_close_matches(name, self.kinds, n=1)
            guess = f" (did you mean {close[0]}?)" if close else ""
            raise FilterError(f"unknown column {name!r}{guess}", self.text, column.start_pos,
                              hint="columns: " + ", ".join(sorted(self.kinds)))
        op = _OP_ALIASES.get(str(op_token), str(op_token))
        if value is None and op not in ("=", "!="):
            raise FilterError("null can only be compared with = or !=", self.text, op_token.start_pos)
        kind = self.kinds[name]
        mismatch = (
            (kind == "number" and (isinstance(value, (str, bool))))
            or (kind == "text" and isinstance(value, (int, float)))
            or (kind == "bool" and value is not None and not isinstance(value, bool))
        )
        if mismatch:
            wanted = {"number": "a number", "text": "quoted text", "bool": "true or false"}[kind]
            raise FilterError(f"{name} is compared with {wanted}, not {value_token}", self.text, value_token.start_pos)
        return Compare(name, op, value)

    def and_expr(self, items):
        return And(tuple(_flatten(items, And)))

    def or_expr(self, items):
        return Or(tuple(_flatten(items, Or)))

    def negation(self, items):
        return Not(items[0])


def _flatten(items, kind):
    for item in items:
        if isinstance(item, kind):
            yield from item.items
        else:
            yield item


def depth(expr: Expr) -> int:
    """How deeply the tree nests (a single comparison is 1); computed without recursion."""
    deepest, stack = 0, [(expr, 1)]
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        if isinstance(node, (And, Or)):
            stack.extend((child, level + 1) for child in node.items)
        elif isinstance(node, Not):
            stack.append((node.item, level + 1))
    return deepest


def parse_filter(text: str, columns: Iterable[str] | Mapping[str, str] = schema.RUN_RESULTS_COLUMNS) -> Expr:
    """Parse a filter expression; raises FilterError pointing at the first mistake.

    `columns` names the columns a filter may use (default: the `run_results` view); a mapping
    gives each one's kind ("number", "text", "bool", "any") for type checks.
    """
    if not isinstance(text, str):
        raise FilterError(f"a filter must be text, not {type(text).__name__}")
    if not text.strip():
        raise FilterError("the filter is empty; write e.g. kappa < 0.5 and delta_total > 0.1")
    if len(text) > MAX_LENGTH:
        raise FilterError(f"the filter is longer than {MAX_LENGTH} characters")
    kinds = dict(columns) if isinstance(columns, Mapping) else column_kinds(columns)
    # A paren pre-scan bounds nesting before the parser builds a deep tree.
    if text.count("(") > MAX_DEPTH and _paren_depth(text) > MAX_DEPTH:
        raise FilterError(f"the filter nests parentheses more than {MAX_DEPTH} deep")
    try:
        tree = _parser().parse(text)
    except lark.exceptions.UnexpectedInput as exc:
        raise _syntax_error(exc, text) from None
    try:
        expr = _ToAst(text, kinds).transform(tree)
    except lark.exceptions.VisitError as exc:
        if isinstance(exc.orig_exc, FilterError):
            raise exc.orig_exc from None
        raise
    if depth(expr) > MAX_DEPTH:
        raise FilterError(f"the filter nests more than {MAX_DEPTH} deep")
    return expr


def _paren_depth(text: str) -> int:
    level = deepest = 0
    for char in text:  # quotes are ignored: an over-estimate only makes the check stricter
        if char == "(":
            level += 1
            deepest = max(deepest, level)
        elif char == ")":
            level = max(level - 1, 0)
    return deepest


def columns_of(expr: Expr) -> set[str]:
    """Every column an expression reads."""
    found, stack = set(), [expr]
    while stack:
        node = stack.pop()
        if isinstance(node, Compare):
            found.add(node.column)
        elif isinstance(node, Not):
            stack.append(node.item)
        else:
            stack.extend(node.items)
    return found


# --- SQL (SQLAlchemy) -----------------------------------------------------------------------


def to_sqlalchemy(expr: Expr, selectable):
    """A SQLAlchemy boolean clause over `selectable`'s columns; every value is a bound parameter."""
    columns = selectable.c if hasattr(selectable, "c") else selectable
    if isinstance(expr, Compare):
        column = columns[expr.column]
        if expr.value is None:
            return column.is_(None) if expr.op == "=" else column.is_not(None)
        return _PY_OPS[expr.op](column, expr.value)
    if isinstance(expr, And):
        return and_(*(to_sqlalchemy(item, selectable) for item in expr.items))
    if isinstance(expr, Or):
        return or_(*(to_sqlalchemy(item, selectable) for item in expr.items))
    if isinstance(expr, Not):
        return not_(to_sqlalchemy(expr.item, selectable))
    raise TypeError(f"not a filter expression: {expr!r}")


# --- PostgREST -----------------------------------------------------------------------------

_POSTGREST_OPS = {"<": "lt", "<=": "lte", ">": "gt", ">=": "gte", "=": "eq", "!=": "neq"}


def _postgrest_operand(compare: Compare, in_tree: bool) -> str:
    """`op.value` for one comparison. A top-level value runs to the end of its parameter, so it
    is sent as is; inside an and(…)/or(…) tree a value is double-quoted with \\ escaping, so
    commas, parentheses, dots and quotes stay data."""
    value = compare.value
    if value is None:
        return "is.null" if compare.op == "=" else "not.is.null"
    op = _POSTGREST_OPS[compare.op]
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (int, float)):
        text = repr(value)
    else:
        text = value
        if in_tree:
            text = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{op}.{text}"


def _postgrest_tree(expr: Expr) -> str:
    """One element of a PostgREST logic tree, e.g. `kappa.lt.0.5` or `and(mu.eq.1,seed.gt.3)`."""
    if isinstance(expr, Compare):
        return f"{expr.column}.{_postgrest_operand(expr, in_tree=True)}"
    if isinstance(expr, Not):
        inner = expr.item
        if isinstance(inner, Compare):
            if inner.value is None:  # `not.is.null` would need a double negation: flip instead
                return _postgrest_tree(Compare(inner.column, "!=" if inner.op == "=" else "=", None))
            return f"{inner.column}.not.{_postgrest_operand(inner, in_tree=True)}"
        return "not." + _postgrest_tree(inner)
    name = "and" if isinstance(expr, And) else "or"
    return f"{name}({','.join(_postgrest_tree(item) for item in expr.items)})"


def to_postgrest(expr: Expr) -> list[tuple[str, str]]:
    """PostgREST query parameters for an expression (PostgREST ANDs its parameters).

    Each plain comparison of a top-level `and` is one parameter, e.g. ("kappa", "lt.0.5"); an
    or/not tree is one logic-tree parameter, e.g. ("or", "(kappa.lt.0.5,and(mu.eq.1,seed.gt.3))");
    a top-level `and` holding several trees is sent whole as one ("and", "(…)").
    """
    expr = _drop_double_negation(expr)
    items = expr.items if isinstance(expr, And) else (expr,)
    simple = [item for item in items if _is_simple(item)]
    trees = [item for item in items if not _is_simple(item)]
    if len(trees) > 1:  # two logic trees under one key each could collide: send one and(…)
        return [_logic_param(expr)]
    return [_top_level_param(item) for item in simple] + [_logic_param(tree) for tree in trees]


def _logic_param(expr: Expr) -> tuple[str, str]:
    """One and(…)/or(…) tree (possibly negated) as a query parameter: ("not.or", "(…)")."""
    tree = _postgrest_tree(expr)
    cut = tree.index("(")
    return tree[:cut], tree[cut:]


def _drop_double_negation(expr: Expr) -> Expr:
    """`not not x` is `x` (also in three-valued logic); PostgREST can say only one `not.`."""
    while isinstance(expr, Not) and isinstance(expr.item, Not):
        expr = expr.item.item
    if isinstance(expr, Not):
        return Not(_drop_double_negation(expr.item))
    if isinstance(expr, (And, Or)):
        return type(expr)(tuple(_drop_double_negation(item) for item in expr.items))
    return expr


def _is_simple(expr: Expr) -> bool:
    return isinstance(expr, Compare) or (isinstance(expr, Not) and isinstance(expr.item, Compare))


def _top_level_param(expr: Expr) -> tuple[str, str]:
    if isinstance(expr, Compare):
        return expr.column, _postgrest_operand(expr, in_tree=False)
    inner = expr.item
    if inner.value is None:
        return inner.column, _postgrest_operand(Compare(inner.column, "!=" if inner.op == "=" else "=", None), in_tree=False)
    return inner.column, "not." + _postgrest_operand(inner, in_tree=False)


# --- in Python ------------------------------------------------------------------------------


def evaluate(expr: Expr, row: Mapping[str, Any]) -> bool | None:
    """The expression on one row with SQL's three-valued logic: None means unknown (a NULL was
    compared), and a query keeps only rows where it is True."""
    if isinstance(expr, Compare):
        actual = row.get(expr.column)
        if expr.value is None:
            return (actual is None) if expr.op == "=" else (actual is not None)
        if actual is None:
            return None
        return _PY_OPS[expr.op](actual, expr.value)
    if isinstance(expr, Not):
        inner = evaluate(expr.item, row)
        return None if inner is None else not inner
    results = [evaluate(item, row) for item in expr.items]
    if isinstance(expr, And):
        return False if False in results else (None if None in results else True)
    return True if True in results else (None if None in results else False)
