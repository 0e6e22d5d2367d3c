"""CEL syntax trees to Python closures: the fast evaluator.

Each node becomes a function `fn(activation) -> value` that raises `CelEvalError` for an
error value; evaluating a typical rule costs about a microsecond (bench/bench_rules.py).
A node outside the compiled subset raises `Unsupported` at compile time and the caller
falls back to the wrapped cel-python interpreter (`cel.py`); a name that cannot exist
(unknown variable, unknown `doc` field, unknown function) is a `CelCompileError`.

When the environment knows the collection (`doc_fields`), `doc` holds a decoded document
as the database layer returns it (timestamps as ISO text, blobs as base64, json parsed),
and `doc.<field>` converts that one field to its CEL value on access.

An expression whose work can grow with its data (a comprehension, `matches`, `+` building
strings or lists) is wrapped so each evaluation carries an `EvalBudget` of
`env.eval_budget` steps under `budget.BUDGET`; the nodes that grow charge it, and the
rest of the closures never look at it.
"""

from __future__ import annotations

import base64
import math
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from alyx_server.rules import budget as cost
from alyx_server.rules import extensions as ext
from alyx_server.rules import functions as fns
from alyx_server.rules import lookups as lk
from alyx_server.rules import operators as ops
from alyx_server.rules import regex as rx
from alyx_server.rules.syntax import (
    And,
    Call,
    CelCompileError,
    Comprehension,
    Cond,
    Ident,
    Index,
    ListLit,
    Lit,
    MapLit,
    Message,
    Node,
    Not,
    Op,
    Or,
    Select,
)
from alyx_server.rules.values import (
    NONE,
    CelEvalError,
    CelType,
    Optional,
    UInt,
    cel_add,
    cel_compare,
    cel_div,
    cel_in,
    cel_index,
    cel_mod,
    cel_mul,
    cel_neg,
    cel_select,
    cel_sub,
    from_json,
    key_of,
    no_overload,
    opt_index,
    opt_select,
)
from alyx_server.schema.model import FieldType

__all__ = [
    "LOCAL",
    "Activation",
    "CompileEnv",
    "Fn",
    "Unsupported",
    "compile_budgeted",
    "compile_node",
    "doc_value",
]

Activation = Mapping[str, Any]
LOCAL = "%"
"""Prefix of a comprehension variable's activation key (no CEL name can spell it), so the
loop variable `y` never hides the global `y` that `.y` names."""
Fn = Callable[[Activation], Any]

TYPE_IDENTS = {
    n: CelType(n)
    for n in (
        "int", "uint", "double", "bool", "string", "bytes", "list", "map", "null_type", "type",
        "google.protobuf.Timestamp", "google.protobuf.Duration", "optional_type",
    )
}  # fmt: skip


class Unsupported(Exception):
    """A construct the closure compiler does not handle (the fallback evaluator may)."""

    def __init__(self, message: str, node: Node) -> None:
        super().__init__(message)
        self.node = node


@dataclass(frozen=True, slots=True)
class CompileEnv:
    """What names an expression may use.

    `variables` None admits any variable (looked up at evaluation time); `doc_fields` maps
    the collection's field names to their types when `doc` is a stored document.
    """

    variables: frozenset[str] | None = None
    doc_fields: Mapping[str, FieldType] | None = None
    collection: str = ""
    # False: an unknown function is an error at evaluation time, not at compile time.
    strict_functions: bool = True
    # Steps one evaluation may take (rules.eval_budget); see budget.EvalBudget.
    eval_budget: int = cost.DEFAULT_EVAL_BUDGET
    # The schema's collections by name: `get` and `exists` may read them (rules/lookups.py).
    tables: Mapping[str, Any] | None = None


def _parse_ts(text: Any) -> Any:
    if text is None or isinstance(text, datetime):
        return text
    return datetime.fromisoformat(text)


def _blob(text: Any) -> Any:
    if text is None or isinstance(text, bytes):
        return text
    return base64.b64decode(text)


_FIELD_CONVERTERS: Mapping[FieldType, Callable[[Any], Any]] = {
    FieldType.TIMESTAMP: _parse_ts,
    FieldType.BLOB: _blob,
    FieldType.JSON: from_json,
    FieldType.FILE: from_json,
}


def doc_value(doc: Mapping[str, Any], fields: Mapping[str, FieldType]) -> dict[str, Any]:
    """A whole decoded document as a CEL map (every field converted)."""
    out: dict[str, Any] = {}
    for name, value in doc.items():
        t = fields.get(name)
        conv = _FIELD_CONVERTERS.get(t) if t is not None else None
        out[name] = conv(value) if conv is not None and value is not None else value
    return out


def compile_node(node: Node, env: CompileEnv) -> Fn:
    """The closure computing `node`; Unsupported or CelCompileError when it cannot be built."""
    return compile_budgeted(node, env)[0]


def compile_budgeted(node: Node, env: CompileEnv) -> tuple[Fn, bool]:
    """The closure of `node`, and whether it reads an `EvalBudget` from the activation.

    Such a closure makes its own budget of `env.eval_budget` steps when the activation
    brings none; a caller with a per-request limit puts one under `budget.BUDGET`.
    """
    compiler = _Compiler(env)
    fn = compiler.compile(node, frozenset())
    if not compiler.uses_budget:
        return fn, False
    limit = env.eval_budget
    budget_key = cost.BUDGET

    def budgeted(a: Activation) -> Any:
        # A caller evaluating several parts of one expression passes one budget for all.
        if budget_key in a:
            return fn(a)
        # A fresh dict, never the caller's mapping (which it may share); dict.copy and one
        # store are cheaper than {**a, key: budget}.
        own = a.copy() if type(a) is dict else dict(a)
        own[budget_key] = [limit, limit]
        return fn(own)

    return budgeted, True


# String functions that scan their receiver: inside a comprehension they charge its length.
_SCANNING = frozenset({"contains", "startsWith", "endsWith"})


class _Compiler:
    def __init__(self, env: CompileEnv) -> None:
        self.env = env
        # Whether a closure reads the evaluation's budget (compile_budgeted then wraps it to supply one).
        self.uses_budget = False

    def compile(self, node: Node, scope: frozenset[str]) -> Fn:
        method = getattr(self, "_" + type(node).__name__.lower())
        fn: Fn = method(node, scope)
        return fn

    # -- leaves --------------------------------------------------------------------------
    def _lit(self, node: Lit, scope: frozenset[str]) -> Fn:
        value = node.value
        return lambda a: value

    def _ident(self, node: Ident, scope: frozenset[str]) -> Fn:
        name = node.name
        if name in scope and not node.root:
            local = LOCAL + name
            return lambda a: a[local]
        env = self.env
        if env.variables is not None and name not in env.variables:
            if name in TYPE_IDENTS:
                t = TYPE_IDENTS[name]
                return lambda a: t
            known = ", ".join(sorted(env.variables))
            raise CelCompileError(
                f"undeclared reference to {name!r} (known: {known})", node.line, node.column
            )
        if name == "doc" and env.doc_fields is not None:
            fields = env.doc_fields
            return lambda a: doc_value(a["doc"], fields)
        fallback = TYPE_IDENTS.get(name)

        def lookup(a: Activation) -> Any:
            try:
                return a[name]
            except KeyError:
                if fallback is not None:
                    return fallback
                raise CelEvalError(f"undeclared reference to {name!r}") from None

        return lookup

    def _select(self, node: Select, scope: frozenset[str]) -> Fn:
        op = node.operand
        if (
            isinstance(op, Ident)
            and op.name == "doc"
            and (op.root or "doc" not in scope)
            and self.env.doc_fields
        ):
            if node.optional:
                plain = self._doc_field(Select(node.line, node.column, op, node.field))
                return lambda a: Optional(True, plain(a))
            return self._doc_field(node)
        parts = _dotted(node)
        if parts is not None and self.env.variables is None and (parts[0] not in scope or _rooted(node)):
            return _qualified(parts)
        operand = self.compile(op, scope)
        name = node.field
        if node.test_only:

            def has(a: Activation) -> Any:
                v = operand(a)
                if type(v) is Optional:
                    if not v.has:
                        return False
                    v = v.value
                if isinstance(v, Mapping):
                    return name in v
                raise no_overload("has", v)

            return has
        if node.optional:

            def optional_select(a: Activation) -> Any:
                v = operand(a)
                if type(v) is dict:
                    return Optional(True, v[name]) if name in v else NONE
                return opt_select(v, name)

            return optional_select

        var = self._variable(op, scope)
        if var is not None:
            # `auth.id`, `request.body`: the variable read here, not by one more closure
            # (which still answers when the activation lacks it).

            def select_variable(a: Activation) -> Any:
                try:
                    v = a[var]
                except KeyError:
                    v = operand(a)
                if type(v) is dict:
                    try:
                        return v[name]
                    except KeyError:
                        raise CelEvalError(f"no such key: {name!r}") from None
                return cel_select(v, name)

            return select_variable

        def select(a: Activation) -> Any:
            v = operand(a)
            if type(v) is dict:
                try:
                    return v[name]
                except KeyError:
                    raise CelEvalError(f"no such key: {name!r}") from None
            return cel_select(v, name)

        return select

    def _variable(self, node: Node, scope: frozenset[str]) -> str | None:
        """The activation key `node` reads when it is a declared variable (`auth`,
        `request`), not a loop variable or `doc` (which is converted)."""
        env = self.env
        if (
            isinstance(node, Ident)
            and (node.root or node.name not in scope)
            and env.variables is not None
            and node.name in env.variables
            and not (node.name == "doc" and env.doc_fields is not None)
        ):
            return node.name
        return None

    def _doc_field(self, node: Select) -> Fn:
        fields = self.env.doc_fields
        assert fields is not None
        name = node.field
        if name not in fields:
            known = ", ".join(fields)
            raise CelCompileError(
                f"unknown field {name!r} in doc.{name}; fields of {self.env.collection} are: {known}",
                node.line,
                node.column,
            )
        if node.test_only:
            return lambda a: name in a["doc"]
        conv = _FIELD_CONVERTERS.get(fields[name])
        if conv is None:

            def plain(a: Activation) -> Any:
                try:
                    return a["doc"][name]
                except KeyError:
                    raise CelEvalError(f"no such key: {name!r}") from None

            return plain

        def converted(a: Activation) -> Any:
            try:
                v = a["doc"][name]
            except KeyError:
                raise CelEvalError(f"no such key: {name!r}") from None
            return None if v is None else conv(v)

        return converted

    def _index(self, node: Index, scope: frozenset[str]) -> Fn:
        operand, index = self.compile(node.operand, scope), self.compile(node.index, scope)
        if node.optional:
            return lambda a: opt_index(operand(a), index(a))
        return lambda a: cel_index(operand(a), index(a))

    def _listlit(self, node: ListLit, scope: frozenset[str]) -> Fn:
        items = [self.compile(i, scope) for i in node.items]
        if node.optional:
            marked = [(f, i in node.optional) for i, f in enumerate(items)]

            def build_list(a: Activation) -> Any:
                out = []
                for f, optional in marked:
                    v = f(a)
                    if optional:
                        if type(v) is not Optional:
                            raise no_overload("[?_]", v)
                        if not v.has:
                            continue
                        v = v.value
                    out.append(v)
                return out

            return build_list
        if all(isinstance(i, Lit) for i in node.items):
            values = [i.value for i in node.items]  # type: ignore[attr-defined]
            return lambda a: values
        return lambda a: [f(a) for f in items]

    def _maplit(self, node: MapLit, scope: frozenset[str]) -> Fn:
        entries = [
            (self.compile(k, scope), self.compile(v, scope), i in node.optional)
            for i, (k, v) in enumerate(node.entries)
        ]

        def build(a: Activation) -> Any:
            # Keys go through key_of: `true` and `1` are distinct CEL keys, one dict key.
            out: dict[Any, Any] = {}
            for kf, vf, optional in entries:
                k = kf(a)
                if type(k) not in (str, int, bool) and not isinstance(k, int):
                    raise CelEvalError(f"unsupported map key type: {type(k).__name__}")
                key = key_of(k)
                if key in out:
                    raise CelEvalError(f"Failed with repeated key: {k!r}")
                v = vf(a)
                if optional:
                    if type(v) is not Optional:
                        raise no_overload("{?_: _}", v)
                    if not v.has:
                        continue
                    v = v.value
                out[key] = v
            return out

        return build

    # -- logic ---------------------------------------------------------------------------
    def _and(self, node: And, scope: frozenset[str]) -> Fn:
        left, right = self.compile(node.left, scope), self.compile(node.right, scope)
        return ops.logical(left, right, False)

    def _or(self, node: Or, scope: frozenset[str]) -> Fn:
        left, right = self.compile(node.left, scope), self.compile(node.right, scope)
        return ops.logical(left, right, True)

    def _not(self, node: Not, scope: frozenset[str]) -> Fn:
        operand = self.compile(node.operand, scope)

        def negate(a: Activation) -> Any:
            v = operand(a)
            if v is True:
                return False
            if v is False:
                return True
            raise no_overload("!_", v)

        return negate

    def _cond(self, node: Cond, scope: frozenset[str]) -> Fn:
        cond = self.compile(node.cond, scope)
        then, orelse = self.compile(node.then, scope), self.compile(node.orelse, scope)

        def choose(a: Activation) -> Any:
            c = cond(a)
            if c is True:
                return then(a)
            if c is False:
                return orelse(a)
            raise no_overload("_?_:_", c)

        return choose

    # -- operators -----------------------------------------------------------------------
    def _op(self, node: Op, scope: frozenset[str]) -> Fn:
        left = self.compile(node.left, scope)
        if node.op == "neg":
            return lambda a: cel_neg(left(a))
        assert node.right is not None
        right = self.compile(node.right, scope)
        special = self._null_test(node, left, scope) or ops.specialised(node, left)
        if special is not None:
            return special
        op = node.op
        if op == "==" or op == "!=":
            return ops.equality(op == "==", left, right)
        if op in ("<", "<=", ">", ">="):
            return lambda a: cel_compare(op, left(a), right(a))
        if op == "in":
            if scope:
                return self._charged_in(left, right)
            return lambda a: cel_in(left(a), right(a))
        arith = _ARITHMETIC[op]
        if op == "+":
            return self._charged_add(left, right)
        return lambda a: arith(left(a), right(a))

    def _null_test(self, node: Op, left: Fn, scope: frozenset[str]) -> Fn | None:
        """`auth != null`, `auth == null`: the variable read in the test's closure."""
        var = self._variable(node.left, scope)
        if var is None or node.op not in ("==", "!=") or not isinstance(node.right, Lit):
            return None
        if node.right.value is not None:
            return None
        equal = node.op == "=="

        def null_test(a: Activation) -> Any:
            try:
                v = a[var]
            except KeyError:
                v = left(a)
            return (v is None) is equal

        return null_test

    def _charged_add(self, left: Fn, right: Fn) -> Fn:
        """`+`: `s + s + s ...` copies ever longer values, so a long result is charged."""
        self.uses_budget = True
        spend, key, per_step = cost.spend, cost.BUDGET, cost.SIZE_PER_STEP

        def add(a: Activation) -> Any:
            v = cel_add(left(a), right(a))
            t = type(v)
            if (t is str or t is list or t is bytes) and len(v) >= per_step:
                spend(a[key], len(v) // per_step)
            return v

        return add

    def _charged_in(self, left: Fn, right: Fn) -> Fn:
        """`x in list` inside a loop: a scan per element, charged by the list's length."""
        self.uses_budget = True
        charge, key = cost.charge_size, cost.BUDGET

        def member(a: Activation) -> Any:
            x = left(a)
            return cel_in(x, charge(a[key], right(a)))

        return member

    def _call(self, node: Call, scope: frozenset[str]) -> Fn:
        if self.env.tables is not None and lk.is_lookup(node):
            return self._lookup(node, scope)
        args = [self.compile(x, scope) for x in node.args]
        target = None if node.target is None else self.compile(node.target, scope)
        special = self._extension(node, [target, *args] if target is not None else args)
        if special is not None:
            return special
        budgeted = fns.budgeted_lookup(node.function, target is not None, len(args))
        if budgeted is not None:
            return self._budgeted_call(budgeted, [target, *args] if target is not None else args)
        impl = fns.lookup(node.function, target is not None, len(args))
        if impl is None:
            message = f"unknown function {node.function!r}"
            if self.env.strict_functions:
                raise CelCompileError(message, node.line, node.column)

            def unknown(a: Activation) -> Any:
                raise CelEvalError(message)

            return unknown
        all_args = [target, *args] if target is not None else args
        if node.function == "matches":
            return self._matches(node, all_args)
        if node.function in _SCANNING and scope and target is not None and len(args) == 1:
            self.uses_budget = True
            charge, key, recv, (arg,) = cost.charge_size, cost.BUDGET, target, args
            return lambda a: impl(charge(a[key], recv(a)), arg(a))
        if len(all_args) == 1:
            (x,) = all_args
            if node.function == "size":

                def size(a: Activation) -> Any:
                    v = x(a)
                    return len(v) if type(v) is str or type(v) is list else impl(v)

                return size
            return lambda a: impl(x(a))
        if len(all_args) == 2:
            x, y = all_args
            return lambda a: impl(x(a), y(a))
        return lambda a: impl(*(f(a) for f in all_args))

    def _extension(self, node: Call, all_args: list[Fn]) -> Fn | None:
        """An extension function's closure made for this call (`extensions.closure`)."""
        nodes = [node.target, *node.args] if node.target is not None else node.args
        literals = [n.value if isinstance(n, Lit) else ext.DYNAMIC for n in nodes]
        made = ext.closure(node.function, node.target is not None, all_args, literals, cost.BUDGET)
        if made is None:
            return None
        fn, charges = made
        self.uses_budget = self.uses_budget or charges
        return fn

    def _budgeted_call(self, impl: Callable[..., Any], all_args: list[Fn]) -> Fn:
        """An extension function whose work grows with its values: it charges the budget."""
        self.uses_budget = True
        key = cost.BUDGET
        if len(all_args) == 1:
            (x,) = all_args
            return lambda a: impl(a[key], x(a))
        if len(all_args) == 2:
            x, y = all_args
            return lambda a: impl(a[key], x(a), y(a))
        return lambda a: impl(a[key], *(f(a) for f in all_args))

    def _matches(self, node: Call, all_args: list[Fn]) -> Fn:
        """`s.matches(p)` / `matches(s, p)`: RE2, charged to the budget for its work."""
        self.uses_budget = True
        text, pattern = all_args
        key = cost.BUDGET
        regex = rx.literal_pattern(node)
        if regex is not None:
            search = rx.search
            return lambda a: search(text(a), regex, a[key])
        dynamic = rx.matches
        return lambda a: dynamic(text(a), pattern(a), a[key])

    def _lookup(self, node: Call, scope: frozenset[str]) -> Fn:
        """`get(c, id)` (the doc, read by primary key) and `exists(c, {f: v})`: point reads
        through `lookups.READER`, each charged to the evaluation's budget."""
        assert self.env.tables is not None
        self.uses_budget = True
        target = self.env.tables[node.args[0].value]  # type: ignore[attr-defined]
        key = cost.BUDGET
        if node.function == "get":
            ident = self.compile(node.args[1], scope)
            fields = {f.name: f.type for f in target.fields}
            get, convert = lk.point_get, doc_value
            return lambda a: convert(get(target, ident(a), a.get(key)), fields)
        spec = node.args[1]
        assert isinstance(spec, MapLit)
        values = [(k.value, self.compile(v, scope)) for k, v in spec.entries]  # type: ignore[attr-defined]
        exists = lk.point_exists
        return lambda a: exists(target, {name: fn(a) for name, fn in values}, a.get(key))

    def _message(self, node: Message, scope: frozenset[str]) -> Fn:
        """The protobuf wrapper types, which CEL unwraps to plain values; any other
        message type is refused here (Alyx documents hold no protobuf messages), so no
        expression is ever answered by an interpreter that models them wrongly."""
        name = node.type_name.lstrip(".")
        wrapper = _WRAPPERS.get(name)
        if wrapper is None and name == "google.protobuf.Value" and not node.fields:
            return lambda a: None
        if wrapper is None:
            raise CelCompileError(
                f"protobuf message type {name} is not supported (Alyx documents hold no protobuf "
                "messages); only the google.protobuf wrapper types are",
                node.line,
                node.column,
            )
        if any(f != "value" for f, _ in node.fields):
            raise CelCompileError(f"{name} has one field, value", node.line, node.column)
        zero, convert = wrapper
        if not node.fields:
            return lambda a: zero
        value = self.compile(node.fields[0][1], scope)
        return lambda a: convert(value(a))

    def _comprehension(self, node: Comprehension, scope: frozenset[str]) -> Fn:
        inner = scope | node.variables
        rng = self.compile(node.range, scope)
        body = self.compile(node.body, inner)
        flt = None if node.filter is None else self.compile(node.filter, inner)
        if node.kind not in ("bind", "optMap", "optFlatMap"):
            self.uses_budget = True
        var2 = None if node.var2 is None else LOCAL + node.var2
        return fns.comprehension(node.kind, LOCAL + node.var, rng, body, flt, var2)


_ARITHMETIC: Mapping[str, Callable[[Any, Any], Any]] = {
    "+": cel_add, "-": cel_sub, "*": cel_mul, "/": cel_div, "%": cel_mod,
}  # fmt: skip


def _dotted(node: Node) -> list[str] | None:
    """`a.b.c` as ["a", "b", "c"] when the node is a plain chain of selections on a name."""
    if isinstance(node, Ident):
        return [node.name.lstrip(".")]
    if isinstance(node, Select) and not node.test_only and not node.optional:
        head = _dotted(node.operand)
        return None if head is None else [*head, node.field]
    return None


def _wrapped(
    name: str, kinds: tuple[type, ...], check: Callable[[Any], Any] = lambda v: v
) -> Callable[[Any], Any]:
    def convert(v: Any) -> Any:
        if type(v) not in kinds:
            raise no_overload(name, v)
        return check(v)

    return convert


def _int32(v: int) -> int:
    if not -(2**31) <= v < 2**31:
        raise CelEvalError("integer overflow")
    return v


def _uint32(v: int) -> UInt:
    if v >= 2**32:
        raise CelEvalError("unsigned integer overflow")
    return UInt(v)


def _float32(v: float) -> float:
    try:
        return float(struct.unpack("f", struct.pack("f", v))[0])
    except OverflowError:
        return math.copysign(math.inf, v)


_WRAPPERS: Mapping[str, tuple[Any, Callable[[Any], Any]]] = {
    "google.protobuf.BoolValue": (False, _wrapped("BoolValue", (bool,))),
    "google.protobuf.BytesValue": (b"", _wrapped("BytesValue", (bytes,))),
    "google.protobuf.StringValue": ("", _wrapped("StringValue", (str,))),
    "google.protobuf.DoubleValue": (0.0, _wrapped("DoubleValue", (float,))),
    "google.protobuf.FloatValue": (0.0, _wrapped("FloatValue", (float,), _float32)),
    "google.protobuf.Int64Value": (0, _wrapped("Int64Value", (int,))),
    "google.protobuf.Int32Value": (0, _wrapped("Int32Value", (int,), _int32)),
    "google.protobuf.UInt64Value": (UInt(0), _wrapped("UInt64Value", (UInt,))),
    "google.protobuf.UInt32Value": (UInt(0), _wrapped("UInt32Value", (UInt,), _uint32)),
}


def _rooted(node: Node) -> bool:
    """Whether a chain of selections starts at a `.name` (a global name)."""
    while isinstance(node, Select):
        node = node.operand
    return isinstance(node, Ident) and node.root


def _qualified(parts: list[str]) -> Fn:
    """Resolve `a.b.c` against the longest variable name that prefixes it (CEL name resolution)."""
    candidates = [(".".join(parts[:i]), parts[i:]) for i in range(len(parts), 0, -1)]

    def resolve(a: Activation) -> Any:
        for name, rest in candidates:
            if name in a:
                v = a[name]
            elif name in TYPE_IDENTS:
                v = TYPE_IDENTS[name]
            else:
                continue
            for field in rest:
                v = cel_select(v, field)
            return v
        raise CelEvalError(f"undeclared reference to {parts[0]!r}")

    return resolve
