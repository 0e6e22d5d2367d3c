"""Integers outside SQLite's 64-bit range are decided by the database layer, never overflow.

SQLite's INTEGER is signed 64-bit; binding a larger Python int raises OverflowError deep
in sqlite3. The query builder refuses such filter values (InvalidQuery), the codec refuses
such field values (`invalid_type`) and treats such ids as naming no document.
"""

from __future__ import annotations

from typing import Any

import pytest

from alyx_server.db import (
    Condition,
    Database,
    ListQuery,
    condition_predicate,
    delete_doc,
    encode_doc,
    get_doc,
    insert_doc,
    list_docs,
    parse_filter,
    update_doc,
)
from alyx_server.db.codec import codec_for
from alyx_server.errors import InvalidQuery, NotFound, ValidationError
from tests.alyx_server.db.conftest import COUNTERS, POSTS, post

MAX = 2**63 - 1
MIN = -(2**63)
RANGE = f"outside the 64-bit integer range ({MIN} to {MAX})"


@pytest.mark.parametrize("value", [str(MAX + 1), str(MIN - 1), "1" + "0" * 40])
@pytest.mark.parametrize("op", ["eq", "ne", "gt", "lte"])
def test_filter_values_beyond_64_bits_are_invalid_query(op: str, value: str) -> None:
    with pytest.raises(InvalidQuery) as caught:
        parse_filter(COUNTERS, f"n:{op}:{value}")
    assert caught.value.message == (
        f"invalid filter 'n:{op}:{value}': n is an int field and '{value}' is {RANGE}"
    )


def test_an_in_list_with_one_value_beyond_64_bits_is_refused() -> None:
    with pytest.raises(InvalidQuery, match=f"'{MAX + 1}' is outside the 64-bit integer range"):
        parse_filter(COUNTERS, f"n:in:1,2,{MAX + 1}")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (MAX + 1, f"n is an int field and {MAX + 1} is {RANGE}"),
        (float(2**64), f"n is an int field and {float(2**64)!r} is {RANGE}"),
        # What orjson makes of -9223372036854775809: a float that rounds to -2**63.
        (float(MIN), f"n is an int field and {float(MIN)!r} is not an integer"),
        (2.5, "n is an int field and 2.5 is not an integer"),
    ],
)
def test_json_operands_of_int_fields_are_checked(value: Any, message: str) -> None:
    """The structured conditions (realtime filters) carry JSON numbers, not text."""
    with pytest.raises(InvalidQuery) as caught:
        condition_predicate(COUNTERS, Condition("n", "eq", value))
    assert caught.value.message == f"invalid condition n eq: {message}"


async def test_boundary_values_filter_without_error(db: Database) -> None:
    for n in (MIN, MAX, 0):
        await db.write(lambda c, n=n: insert_doc(c, COUNTERS, {"n": n}))
    cases = [(f"n:eq:{MAX}", [MAX]), (f"n:lte:{MIN}", [MIN]), (f"n:in:{MIN},{MAX}", [MIN, MAX])]
    for text, expected in cases:
        query = ListQuery(COUNTERS, [parse_filter(COUNTERS, text)], sort=[("n", False)])
        result = await db.read(lambda c, q=query: list_docs(c, q))
        assert [d["n"] for d in result.docs] == expected, text


async def test_huge_numbers_compare_with_float_fields(db: Database) -> None:
    """A float field's operand is bound as a float, so a huge JSON integer cannot overflow."""
    await db.write(lambda c: insert_doc(c, POSTS, post("a", score=9.5)))
    cases = [
        (Condition("score", "lt", 10**30), ["a"]),
        (Condition("score", "gt", -(10**30)), ["a"]),
        (Condition("score", "eq", 2**70), []),
    ]
    for cond, expected in cases:
        query = ListQuery(POSTS, [condition_predicate(POSTS, cond)])
        result = await db.read(lambda c, q=query: list_docs(c, q))
        assert [d["slug"] for d in result.docs] == expected, cond
    with pytest.raises(InvalidQuery, match=r"score is a float field and 1000\d+ is not a number"):
        condition_predicate(POSTS, Condition("score", "lt", 10**400))


@pytest.mark.parametrize("offset", [MAX + 1, 2**64])
async def test_offsets_beyond_64_bits_are_invalid_query(db: Database, offset: int) -> None:
    query = ListQuery(COUNTERS, offset=offset)
    with pytest.raises(InvalidQuery) as caught:
        await db.read(lambda c: list_docs(c, query))
    assert (
        caught.value.message == f"invalid offset {offset}: expected an integer of 0 or more (at most {MAX})"
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (MAX + 1, "n is outside the 64-bit integer range"),
        (MIN - 1, "n is outside the 64-bit integer range"),
        (2**64, "n is outside the 64-bit integer range"),
        (float(2**64), "n is outside the 64-bit integer range"),
        (float(MIN), f"n must be written as an integer: {float(MIN)!r} is a rounded number"),
        (float(2**53 + 2), f"n must be written as an integer: {float(2**53 + 2)!r} is a rounded number"),
    ],
)
def test_field_values_beyond_64_bits_are_invalid_type(value: Any, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        encode_doc(COUNTERS, {"n": value})
    assert caught.value.details == [{"field": "n", "code": "invalid_type", "message": message}]


def test_exact_integers_are_stored_as_sent() -> None:
    for value, stored in [(MAX, MAX), (MIN, MIN), (float(2**53), 2**53), (-3.0, -3)]:
        assert encode_doc(COUNTERS, {"n": value}) == {"n": stored, "label": None}


@pytest.mark.parametrize(
    "doc_id", [MAX + 1, MIN - 1, str(MAX + 1), str(MIN - 1), "1" + "0" * 5000, "1_0", " ", True, 1.0]
)
async def test_ids_that_cannot_be_64_bit_integers_name_no_document(db: Database, doc_id: Any) -> None:
    await db.write(lambda c: insert_doc(c, COUNTERS, {"n": 1}))
    assert codec_for(COUNTERS).key(doc_id) is None
    assert await db.read(lambda c: get_doc(c, COUNTERS, doc_id)) is None
    with pytest.raises(NotFound, match="in counters"):
        await db.write(lambda c: update_doc(c, COUNTERS, doc_id, {"n": 2}))
    with pytest.raises(NotFound, match="in counters"):
        await db.write(lambda c: delete_doc(c, COUNTERS, doc_id))


def test_integer_ids_in_range_still_parse() -> None:
    key = codec_for(COUNTERS).key
    assert [key(str(MAX)), key(str(MIN)), key(" 7 "), key("+7"), key(7)] == [MAX, MIN, 7, 7, 7]
