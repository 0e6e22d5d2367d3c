"""Closures for operators on the operand shapes rules use most, for the closure path
(compile_py.py): `&&`/`||` with CEL's commutative error absorption, `==`/`!=` of two
strings or two ints, a comparison with an int literal, `x == "lit"`, `x != null` and
`x in ["a", "b"]`. Each answers exactly what CEL's general operators (rules/values.py)
answer, with fewer calls: a rule's common comparison costs one Python operator instead
of a CEL dispatch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from alyx_server.rules.syntax import ListLit, Lit, Op
from alyx_server.rules.values import CelEvalError, cel_compare, cel_eq, no_overload

__all__ = ["equality", "int_literal", "logical", "specialised"]

Activation = Mapping[str, Any]
Fn = Callable[[Activation], Any]


def logical(left: Fn, right: Fn, short: bool) -> Fn:
    """`&&` (short=False) or `||` (short=True): commutative error absorption."""

    def logical(a: Activation) -> Any:
        try:
            x = left(a)
        except CelEvalError as e:
            x = e
        if x is short:
            return short
        try:
            y = right(a)
        except CelEvalError as e:
            y = e
        if y is short:
            return short
        if x is (not short) and y is (not short):
            return not short
        if isinstance(x, CelEvalError):
            raise x
        if isinstance(y, CelEvalError):
            raise y
        raise no_overload("_||_" if short else "_&&_", x if type(x) is not bool else y)

    return logical


def specialised(node: Op, left: Fn) -> Fn | None:
    """Fast forms of `x == "lit"`, `x != null`, `x in ["a", "b"]`."""
    right = node.right
    if not isinstance(right, Lit | ListLit):
        return None
    op = node.op
    if isinstance(right, Lit) and op in ("==", "!="):
        value = right.value
        if value is None:
            return (lambda a: left(a) is None) if op == "==" else (lambda a: left(a) is not None)
        if type(value) is str:
            if op == "==":
                return lambda a: (v := left(a)) == value and type(v) is str
            return lambda a: not ((v := left(a)) == value and type(v) is str)
    if isinstance(right, Lit) and type(right.value) is int:
        return int_literal(op, left, right.value)
    if isinstance(right, ListLit) and op == "in":
        items = [i.value for i in right.items if isinstance(i, Lit)]
        if len(items) == len(right.items) and all(type(i) is str for i in items):
            options = frozenset(items)
            return lambda a: type(v := left(a)) is str and v in options
    return None


def equality(equal: bool, left: Fn, right: Fn) -> Fn:
    """`x == y`, `x != y`: two strings or two ints compare directly, the rest as CEL says."""
    if equal:

        def eq(a: Activation) -> Any:
            x, y = left(a), right(a)
            t = type(x)
            if t is type(y) and (t is str or t is int):
                return x == y
            return cel_eq(x, y)

        return eq

    def ne(a: Activation) -> Any:
        x, y = left(a), right(a)
        t = type(x)
        if t is type(y) and (t is str or t is int):
            return x != y
        return not cel_eq(x, y)

    return ne


def int_literal(op: str, left: Fn, c: int) -> Fn | None:
    """`x < 10`, `x.size() == 3`: an int compares with Python's operator, other values
    (uint, double, errors) as CEL says."""
    if op == "==":

        def eq(a: Activation) -> Any:
            v = left(a)
            return v == c if type(v) is int else cel_eq(v, c)

        return eq
    if op == "!=":

        def ne(a: Activation) -> Any:
            v = left(a)
            return v != c if type(v) is int else not cel_eq(v, c)

        return ne
    if op == "<":

        def lt(a: Activation) -> Any:
            v = left(a)
            return v < c if type(v) is int else cel_compare(op, v, c)

        return lt
    if op == "<=":

        def le(a: Activation) -> Any:
            v = left(a)
            return v <= c if type(v) is int else cel_compare(op, v, c)

        return le
    if op == ">":

        def gt(a: Activation) -> Any:
            v = left(a)
            return v > c if type(v) is int else cel_compare(op, v, c)

        return gt
    if op == ">=":

        def ge(a: Activation) -> Any:
            v = left(a)
            return v >= c if type(v) is int else cel_compare(op, v, c)

        return ge
    return None
