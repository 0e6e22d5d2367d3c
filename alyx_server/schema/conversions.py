"""Type conversions for table rebuilds: which are safe, the SQL that converts, the SQL that refuses.

Every change of a field's type is a pair (old type, new type). For each pair this module
gives two SQL snippets over a column expression `x`:

- the conversion, used in the rebuild's `INSERT ... SELECT`;
- the refusal condition, true for a non-NULL value the conversion would lose or mangle.
  The pre-check counts such rows and names them; the rebuild refuses to run while any exist.

NULL always converts to NULL. A few pairs are safe widenings (`type_change_is_safe`): every
value of the old type converts without loss, so they need no migration file. The table is
documented for users in docs/migrations.md, "Type changes".
"""

from __future__ import annotations

from collections.abc import Callable

from alyx_server.schema.ddl import NOW_SQL
from alyx_server.schema.model import FieldType

__all__ = [
    "SAFE_TYPE_CHANGES",
    "conversion_sql",
    "refusal_sql",
    "type_change_is_safe",
]

T = FieldType

# Widenings: every value of the old type is a value of the new type, unchanged in meaning.
SAFE_TYPE_CHANGES: frozenset[tuple[FieldType, FieldType]] = frozenset(
    {
        (T.BOOL, T.INT),
        (T.BOOL, T.FLOAT),
        (T.INT, T.FLOAT),
        (T.UUID, T.STRING),
        (T.UUID, T.TEXT),
        (T.STRING, T.TEXT),
        (T.TEXT, T.STRING),
    }
)

_TEXTUAL = (T.UUID, T.STRING, T.TEXT)

# Beyond 2**53 a REAL cannot hold every integer: int -> float refuses such values.
_MAX_EXACT_FLOAT_INT = 2**53
_HEX = "[0-9a-f]"
_UUID_GLOB = "-".join(_HEX * n for n in (8, 4, 4, 4, 12))
_TIMESTAMP_FORMAT = NOW_SQL.split(",")[0].removeprefix("strftime(")


def type_change_is_safe(old: FieldType, new: FieldType) -> bool:
    """True when every stored value of `old` keeps its meaning as `new` (a widening)."""
    return old == new or (old, new) in SAFE_TYPE_CHANGES


def _bool_to_words(x: str) -> str:
    return f"CASE {x} WHEN 1 THEN 'true' WHEN 0 THEN 'false' END"


def _float_to_text(x: str) -> str:
    # SQLite prints 15 significant digits; fall back to 17 when that would lose precision.
    return (
        f"CASE WHEN {x} IS NULL THEN NULL "
        f"WHEN CAST(CAST({x} AS TEXT) AS REAL) = {x} THEN CAST({x} AS TEXT) "
        f"ELSE printf('%!.17g', {x}) END"
    )


def _float_text_refused(x: str) -> str:
    # SQLite's printf is not exact at the far ends of the exponent range: check the round trip.
    return f"CAST({_float_to_text(x)} AS REAL) IS NOT {x}"


def _text_to_int_refused(x: str) -> str:
    return f"CAST(CAST({x} AS INTEGER) AS TEXT) IS NOT {x}"


def _text_to_float_refused(x: str) -> str:
    return (
        f"(CAST(CAST({x} AS INTEGER) AS TEXT) IS NOT {x} "
        f"AND CAST(CAST({x} AS REAL) AS TEXT) IS NOT {x} "
        f"AND printf('%!.17g', CAST({x} AS REAL)) IS NOT {x})"
    )


_Sql = Callable[[str], str]

# (old, new) -> (conversion, refusal). A pair missing here converts nothing:
# every non-NULL value is refused.
_CONVERSIONS: dict[tuple[FieldType, FieldType], tuple[_Sql, _Sql | None]] = {
    (T.BOOL, T.INT): (lambda x: x, None),
    (T.BOOL, T.FLOAT): (lambda x: f"CAST({x} AS REAL)", None),
    (T.BOOL, T.STRING): (_bool_to_words, None),
    (T.BOOL, T.TEXT): (_bool_to_words, None),
    (T.BOOL, T.JSON): (_bool_to_words, None),
    (T.INT, T.FLOAT): (
        lambda x: f"CAST({x} AS REAL)",
        # Not abs(): abs(-2**63) overflows.
        lambda x: f"({x} > {_MAX_EXACT_FLOAT_INT} OR {x} < -{_MAX_EXACT_FLOAT_INT})",
    ),
    (T.INT, T.BOOL): (
        lambda x: f"CASE {x} WHEN 0 THEN 0 WHEN 1 THEN 1 END",
        lambda x: f"{x} NOT IN (0, 1)",
    ),
    (T.INT, T.STRING): (lambda x: f"CAST({x} AS TEXT)", None),
    (T.INT, T.TEXT): (lambda x: f"CAST({x} AS TEXT)", None),
    (T.INT, T.JSON): (lambda x: f"CAST({x} AS TEXT)", None),
    (T.FLOAT, T.INT): (
        lambda x: f"CAST({x} AS INTEGER)",
        lambda x: f"({x} != CAST({x} AS INTEGER) OR abs({x}) >= 9.2e18)",
    ),
    (T.FLOAT, T.BOOL): (
        lambda x: f"CASE WHEN {x} = 0 THEN 0 WHEN {x} = 1 THEN 1 END",
        lambda x: f"{x} NOT IN (0, 1)",
    ),
    (T.FLOAT, T.STRING): (_float_to_text, _float_text_refused),
    (T.FLOAT, T.TEXT): (_float_to_text, _float_text_refused),
    (T.FLOAT, T.JSON): (
        _float_to_text,
        lambda x: f"({_float_text_refused(x)} OR NOT json_valid({_float_to_text(x)}))",
    ),
    (T.JSON, T.INT): (
        lambda x: f"CAST({x} AS INTEGER)",
        lambda x: f"(NOT json_valid({x}) OR json_type({x}) IS NOT 'integer')",
    ),
    (T.JSON, T.FLOAT): (
        lambda x: f"CAST({x} AS REAL)",
        lambda x: f"(NOT json_valid({x}) OR json_type({x}) NOT IN ('integer', 'real'))",
    ),
    (T.JSON, T.BOOL): (
        lambda x: f"CASE json_type({x}) WHEN 'true' THEN 1 WHEN 'false' THEN 0 END",
        lambda x: f"(NOT json_valid({x}) OR json_type({x}) NOT IN ('true', 'false'))",
    ),
    (T.JSON, T.STRING): (lambda x: x, None),
    (T.JSON, T.TEXT): (lambda x: x, None),
    (T.TIMESTAMP, T.STRING): (lambda x: x, None),
    (T.TIMESTAMP, T.TEXT): (lambda x: x, None),
}

for _old in _TEXTUAL:
    for _new in _TEXTUAL:
        if _old != _new:
            _CONVERSIONS[(_old, _new)] = (lambda x: x, None)
    _CONVERSIONS[(_old, T.INT)] = (lambda x: f"CAST({x} AS INTEGER)", _text_to_int_refused)
    _CONVERSIONS[(_old, T.FLOAT)] = (lambda x: f"CAST({x} AS REAL)", _text_to_float_refused)
    _CONVERSIONS[(_old, T.BOOL)] = (
        lambda x: f"CASE WHEN {x} IN ('1', 'true') THEN 1 WHEN {x} IN ('0', 'false') THEN 0 END",
        lambda x: f"{x} NOT IN ('0', '1', 'true', 'false')",
    )
    _CONVERSIONS[(_old, T.TIMESTAMP)] = (
        lambda x: x,
        lambda x: f"strftime({_TIMESTAMP_FORMAT}, {x}) IS NOT {x}",
    )
    _CONVERSIONS[(_old, T.JSON)] = (lambda x: x, lambda x: f"NOT json_valid({x})")
    _CONVERSIONS[(_old, T.BLOB)] = (lambda x: f"CAST({x} AS BLOB)", None)
# A uuid column only takes lower-case canonical uuids.
for _old in (T.STRING, T.TEXT):
    _CONVERSIONS[(_old, T.UUID)] = (lambda x: x, lambda x: f"NOT ({x} GLOB '{_UUID_GLOB}')")


def conversion_sql(old: FieldType, new: FieldType, x: str) -> str:
    """SQL turning column expression `x` of type `old` into a value of type `new`."""
    if old == new:
        return x
    pair = _CONVERSIONS.get((old, new))
    return pair[0](x) if pair is not None else "NULL"


def refusal_sql(old: FieldType, new: FieldType, x: str) -> str | None:
    """SQL condition true for a non-NULL `x` that cannot become `new`; None when none can fail."""
    if old == new:
        return None
    pair = _CONVERSIONS.get((old, new))
    if pair is None:
        return "1"
    refusal = pair[1]
    return refusal(x) if refusal is not None else None
