"""The filter language: parsing, error positions, SQL and PostgREST translation, injection."""

from __future__ import annotations

import random
import re

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import HypothesisWarning

from bilancio_pipeline.storage import schema
from bilancio_pipeline.storage.filters import (
    And,
    Compare,
    FilterError,
    Not,
    Or,
    columns_of,
    evaluate,
    parse_filter,
    to_postgrest,
    to_sqlalchemy,
)

pytestmark = pytest.mark.filterwarnings("ignore", category=HypothesisWarning)  # long reprs of big trees

# --- a small SQLite table with the view's column types and rows with NULLs ----------------

NUMBER_COLUMNS = ("kappa", "mu", "seed", "n_defaults", "delta_total")
TEXT_COLUMNS = ("regime", "error")
TEST_COLUMNS = NUMBER_COLUMNS + TEXT_COLUMNS
TEXTS = ["active", "passive", "a'b", 'q"uote', "),or=(", "x.y,z", "back\\slash", "", "Ünï"]


def _rows(n=60, seed=7):
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        rows.append({
            "run_id": f"r{i}",
            "kappa": rng.choice([0.25, 0.5, 1.0, 2.0, 4.0]),
            "mu": rng.choice([0, 0.25, 0.5, 0.75, 1]),
            "seed": rng.randint(0, 5),
            "n_defaults": rng.choice([None, 0, 1, 3, 10]),
            "delta_total": rng.choice([None, 0.0, 0.1, 0.3333, 0.9]),
            "regime": rng.choice(TEXTS),
            "error": rng.choice([None, None, *TEXTS]),
        })
    return rows


ROWS = _rows()


@pytest.fixture(scope="module")
def sqlite_table():
    engine = sa.create_engine("sqlite://")
    meta = sa.MetaData()
    source = {**schema.runs.c, **schema.metrics.c}
    table = sa.Table("run_results", meta, sa.Column("run_id", sa.Text, primary_key=True),
                     *(sa.Column(name, source[name].type) for name in TEST_COLUMNS))
    meta.create_all(engine)
    with engine.begin() as conn:
        conn.execute(table.insert(), ROWS)
    yield engine, table
    engine.dispose()


def sql_ids(sqlite_table, expr):
    engine, table = sqlite_table
    with engine.connect() as conn:
        return {r.run_id for r in conn.execute(sa.select(table.c.run_id).where(to_sqlalchemy(expr, table)))}


def python_ids(expr):
    return {r["run_id"] for r in ROWS if evaluate(expr, r) is True}


# --- random valid expressions, with their text ---------------------------------------------


def literal(value):
    if value is None:
        return "null"
    if isinstance(value, str):
        quote = '"' if "'" in value else "'"
        return quote + value.replace(quote, quote * 2) + quote
    return repr(value)


def render(expr, parent=None):
    if isinstance(expr, Compare):
        return f"{expr.column} {expr.op} {literal(expr.value)}"
    if isinstance(expr, Not):
        inner = render(expr.item, Not)
        return f"not {inner}" if isinstance(expr.item, Compare) else f"NOT ({inner})"
    word = " and " if isinstance(expr, And) else " OR "
    text = word.join(render(item, type(expr)) for item in expr.items)
    needs_parens = parent is Not or (parent is And and isinstance(expr, Or))
    return f"({text})" if needs_parens else text


numbers = st.sampled_from([-1, 0, 1, 3, 10, 0.1, 0.25, 0.3333, 0.5, 0.9, 1.0, 2.5, 1e-9, -0.0])
comparisons = st.one_of(
    st.builds(Compare, st.sampled_from(NUMBER_COLUMNS), st.sampled_from(("<", "<=", ">", ">=", "=", "!=")), numbers),
    st.builds(Compare, st.sampled_from(TEXT_COLUMNS), st.sampled_from(("<", ">=", "=", "!=")),
              st.one_of(st.sampled_from(TEXTS), st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=6))),
    st.builds(Compare, st.sampled_from(TEST_COLUMNS), st.sampled_from(("=", "!=")), st.none()),
)


def _extend(children):
    ands = st.lists(children.filter(lambda e: not isinstance(e, And)), min_size=2, max_size=3).map(lambda xs: And(tuple(xs)))
    ors = st.lists(children.filter(lambda e: not isinstance(e, Or)), min_size=2, max_size=3).map(lambda xs: Or(tuple(xs)))
    return st.one_of(ands, ors, children.map(Not))


expressions = st.recursive(comparisons, _extend, max_leaves=8)
KINDS = {c: ("number" if c in NUMBER_COLUMNS else "text") for c in TEST_COLUMNS}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(expressions)
def test_random_expressions_round_trip_and_agree_with_sql(sqlite_table, expr):
    text = render(expr)
    parsed = parse_filter(text, KINDS)
    assert parsed == expr, text
    assert sql_ids(sqlite_table, parsed) == python_ids(parsed), text


@settings(max_examples=300, deadline=None)
@given(expressions)
def test_postgrest_filters_mean_the_same_rows(expr):
    """Decoding our PostgREST params with PostgREST's own value rules selects the same rows."""
    decoded = decode_postgrest(to_postgrest(expr))
    assert {r["run_id"] for r in ROWS if decoded(r)} == python_ids(expr), to_postgrest(expr)


TOKENS = ["kappa", "mu", "regime", "nope", "and", "or", "not", "(", ")", "<", "<=", "=", "!=", ">", "==", "<>",
          "0.5", "-1", "1e3", "'x'", '"y"', "'", '"', "null", "true", "false", ";", "--", ",", "1=1", "\\"]


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=40), st.lists(st.sampled_from(TOKENS), max_size=12).map(" ".join)))
def test_junk_only_ever_raises_filter_error(text):
    try:
        expr = parse_filter(text)
    except FilterError as exc:
        assert str(exc)
        return
    assert columns_of(expr) <= set(schema.RUN_RESULTS_COLUMNS)
    to_postgrest(expr)
    str(to_sqlalchemy(expr, sa.table("run_results", *(sa.column(c) for c in schema.RUN_RESULTS_COLUMNS))))


# --- examples ------------------------------------------------------------------------------


def test_precedence_and_binds_tighter_than_or():
    assert parse_filter("kappa < 1 or mu = 0 and seed > 2") == Or((
        Compare("kappa", "<", 1), And((Compare("mu", "=", 0), Compare("seed", ">", 2))),
    ))
    assert parse_filter("(kappa < 1 or mu = 0) and not seed > 2") == And((
        Or((Compare("kappa", "<", 1), Compare("mu", "=", 0))), Not(Compare("seed", ">", 2)),
    ))


def test_values_and_aliases():
    assert parse_filter("error = null") == Compare("error", "=", None)
    assert parse_filter("error <> NULL") == Compare("error", "!=", None)
    assert parse_filter("seed == 3") == Compare("seed", "=", 3)
    assert parse_filter("regime = 'it''s'") == Compare("regime", "=", "it's")
    assert parse_filter('kappa >= -2.5e-1') == Compare("kappa", ">=", -0.25)


@pytest.mark.parametrize("text, position, fragment", [
    ("kappa < 0.5 and", 15, "ends too early"),
    ("kappa < 0.5; drop table runs", 11, "unexpected character ';'"),
    ("kappa = '1' or 1=1 --", 15, "unexpected '1'"),
    ("kapa < 0.5", 0, "unknown column 'kapa'"),
    ("kappa < 'x'", 8, "kappa is compared with a number"),
    ("regime = active", 9, "quote text"),
    ("kappa < null", 6, "null can only be compared"),
    ("(kappa < 1", 10, "expected )"),
    ("kappa ~ 1", 6, "unexpected character '~'"),
])
def test_errors_point_at_the_mistake(text, position, fragment):
    with pytest.raises(FilterError) as info:
        parse_filter(text)
    error = info.value
    assert fragment in str(error)
    assert error.position == position
    caret_line = next(line for line in str(error).splitlines() if line.strip() == "^")
    assert caret_line.index("^") - 2 == position  # two spaces of indent, like the text line


def test_unknown_column_lists_the_allowed_ones():
    with pytest.raises(FilterError) as info:
        parse_filter("kapa < 1")
    for column in ("kappa", "delta_total", "phi_total", "regime"):
        assert column in str(info.value)


def test_deep_nesting_is_refused_cleanly():
    with pytest.raises(FilterError, match="nest"):
        parse_filter("(" * 1000 + "kappa < 1" + ")" * 1000)
    with pytest.raises(FilterError, match="nest"):
        parse_filter("not " * 200 + "kappa < 1")


def test_sql_binds_every_value(sqlite_table):
    _, table = sqlite_table
    expr = parse_filter("regime = '1'' or 1=1 --' or regime = '),or=(' and kappa < 0.5")
    compiled = to_sqlalchemy(expr, table).compile(dialect=sa.dialects.sqlite.dialect())
    assert "or=(" not in str(compiled) and "1=1" not in str(compiled)
    assert sorted(v for v in compiled.params.values() if isinstance(v, str)) == ["),or=(", "1' or 1=1 --"]


def test_injection_values_are_data_in_sql(sqlite_table):
    # Only rows whose regime is exactly the odd text match; nothing else leaks in.
    for text in ("),or=(", "x.y,z", "a'b", 'q"uote'):
        quote = "'" if "'" not in text else '"'
        expr = parse_filter(f"regime = {quote}{text}{quote}")
        expected = {r["run_id"] for r in ROWS if r["regime"] == text}
        assert expected and sql_ids(sqlite_table, expr) == expected


def test_postgrest_params():
    assert to_postgrest(parse_filter("kappa < 0.5 and delta_total > 0.1")) == [("kappa", "lt.0.5"), ("delta_total", "gt.0.1")]
    assert to_postgrest(parse_filter("kappa < 0.5 or (mu = 1 and seed > 3)")) == [("or", "(kappa.lt.0.5,and(mu.eq.1,seed.gt.3))")]
    assert to_postgrest(parse_filter("error = null and not kappa = 1")) == [("error", "is.null"), ("kappa", "not.eq.1")]
    assert to_postgrest(parse_filter("not (kappa = 1 or mu = 2)")) == [("not.or", "(kappa.eq.1,mu.eq.2)")]
    assert to_postgrest(parse_filter("kappa < 1 and (mu = 0 or seed > 2)")) == [("kappa", "lt.1"), ("or", "(mu.eq.0,seed.gt.2)")]
    assert to_postgrest(parse_filter("(kappa < 1 or mu = 0) and (seed > 2 or seed < 1)")) == [
        ("and", "(or(kappa.lt.1,mu.eq.0),or(seed.gt.2,seed.lt.1))"),
    ]
    assert to_postgrest(parse_filter("regime = '),or=(' or regime = 'a\"b\\\\c'")) == [
        ("or", '(regime.eq."),or=(",regime.eq."a\\"b\\\\\\\\c")'),
    ]
    # top-level values run to the end of their parameter, so they go unquoted
    assert to_postgrest(parse_filter("regime = '),or=('")) == [("regime", "eq.),or=(")]


# --- a reference decoder of PostgREST filters, following its documented value rules -------


def decode_postgrest(params):
    """A predicate on a row for PostgREST query params (pSingleVal / pLogicTree / pQuotedValue)."""
    predicates = []
    for key, value in params:
        negate = key.startswith("not.")
        name = key[4:] if negate else key
        if name in ("and", "or"):
            tree, rest = _tree(name + value, 0)
            assert rest == len(name + value), (key, value)
            predicates.append((lambda t, n: lambda row: _negate(t(row), n))(tree, negate))
        else:
            predicates.append(_leaf(name, value))
    return lambda row: all(p(row) is True for p in predicates)


def _negate(result, negate):
    return (None if result is None else not result) if negate else result


def _tree(text, i):
    negate = text.startswith("not.", i)
    if negate:
        i += 4
    match = re.compile(r"(and|or)\(").match(text, i)
    if not match:  # a filter: field.[not.]op.value
        field_end = text.index(".", i)
        field = text[i:field_end]
        j = field_end + 1
        op_negate = text.startswith("not.", j)
        if op_negate:
            j += 4
        op_end = text.index(".", j)
        op = text[j:op_end]
        value, i = _logic_value(text, op_end + 1)
        leaf = _leaf(field, ("not." if op_negate else "") + f"{op}.{value}", unquoted=True)
        return (lambda row: _negate(leaf(row), negate)), i
    kind, i = match.group(1), match.end()
    children = []
    while True:
        child, i = _tree(text, i)
        children.append(child)
        if text[i] == ",":
            i += 1
            continue
        assert text[i] == ")"
        i += 1
        break

    def combine(row):
        results = [c(row) for c in children]
        if kind == "and":
            out = False if False in results else (None if None in results else True)
        else:
            out = True if True in results else (None if None in results else False)
        return _negate(out, negate)

    return combine, i


def _logic_value(text, i):
    if text.startswith('"', i):
        out, i = [], i + 1
        while text[i] != '"':
            if text[i] == "\\":
                i += 1
            out.append(text[i])
            i += 1
        i += 1
        assert i == len(text) or text[i] in ",)"
        return "".join(out), i
    end = i
    while end < len(text) and text[end] not in ",)":
        end += 1
    return text[i:end], end


def _leaf(field, operand, unquoted=False):
    negate = operand.startswith("not.")
    if negate:
        operand = operand[4:]
    op, _, raw = operand.partition(".")
    ops = {"lt": "<", "lte": "<=", "gt": ">", "gte": ">=", "eq": "=", "neq": "!="}
    if op == "is":
        assert raw == "null"
        compare = Compare(field, "=", None)
    else:
        value = float(raw) if KINDS.get(field) == "number" else raw
        compare = Compare(field, ops[op], value)
    return lambda row: _negate(evaluate(compare, row), negate)
