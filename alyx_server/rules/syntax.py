"""CEL source text to a small syntax tree, with cel-python's grammar.

cel-python keeps one process-wide Lark parser, built for the tree class of the first
`Environment` created; a second environment with another runner class then gets trees
it cannot run. Alyx builds its own parser from the same grammar file instead, so the
rules engine never touches that singleton (see `cel.celpy_environment` for the one place
that does). The Lark tree is turned at once into the frozen nodes below, which both
compilers (Python closures and SQL) read.
"""

from __future__ import annotations

import importlib.util
import re
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import lark

from alyx_server.rules.limits import RULE_LIMITS, SizeLimits, size_problem
from alyx_server.rules.values import INT64_MAX, INT64_MIN, UINT64_MAX, UInt

__all__ = [
    "MACROS",
    "And",
    "Call",
    "CelCompileError",
    "CelLimitError",
    "CelSyntaxError",
    "Comprehension",
    "Cond",
    "Ident",
    "Index",
    "ListLit",
    "Lit",
    "MapLit",
    "Message",
    "Node",
    "Not",
    "Op",
    "Or",
    "Select",
    "lark_parser",
    "parse",
]

MACROS = frozenset(
    {"all", "exists", "exists_one", "existsOne", "map", "filter", "transformList", "transformMap",
     "optMap", "optFlatMap"}
)  # fmt: skip
NAMESPACES = frozenset({"math", "strings", "optional"})
"""Extension function namespaces: `math.greatest(...)` is the function `math.greatest`."""


class CelCompileError(Exception):
    """A CEL expression that does not compile (syntax, unknown name); 1-based line and column."""

    def __init__(self, message: str, line: int = 1, column: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column


class CelSyntaxError(CelCompileError):
    """CEL text that does not parse."""


class CelLimitError(CelSyntaxError):
    """CEL text over a size limit (rules.limits): too long, too many tokens, too deep."""


@dataclass(frozen=True, slots=True)
class Node:
    line: int
    column: int


@dataclass(frozen=True, slots=True)
class Lit(Node):
    value: Any


@dataclass(frozen=True, slots=True)
class Ident(Node):
    name: str
    root: bool = False  # `.name`: the global name, never a comprehension variable


@dataclass(frozen=True, slots=True)
class Select(Node):
    operand: Node
    field: str
    test_only: bool = False  # has(operand.field)
    optional: bool = False  # operand.?field


@dataclass(frozen=True, slots=True)
class Index(Node):
    operand: Node
    index: Node
    optional: bool = False  # operand[?index]


@dataclass(frozen=True, slots=True)
class Call(Node):
    function: str
    target: Node | None
    args: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class ListLit(Node):
    items: tuple[Node, ...]
    optional: frozenset[int] = frozenset()  # positions of `?item` elements


@dataclass(frozen=True, slots=True)
class MapLit(Node):
    entries: tuple[tuple[Node, Node], ...]
    optional: frozenset[int] = frozenset()  # positions of `?key: value` entries


@dataclass(frozen=True, slots=True)
class Comprehension(Node):
    """A macro over a list or map: all, exists, exists_one, map (with optional filter), filter;
    with two variables (`var2`: the value, `var` the index or key) all, exists, exists_one,
    transformList, transformMap; on an optional optMap and optFlatMap; and `cel.bind(var,
    range, body)` as kind "bind" (`var` is `range`'s value inside `body`)."""

    kind: str
    range: Node
    var: str
    body: Node
    filter: Node | None = None
    var2: str | None = None

    @property
    def variables(self) -> frozenset[str]:
        return frozenset((self.var,)) if self.var2 is None else frozenset((self.var, self.var2))


@dataclass(frozen=True, slots=True)
class Message(Node):
    """`Type{field: value}`: protobuf message construction; only the wrapper types
    (`google.protobuf.Int64Value{value: 1}`) and `google.protobuf.Value{}` compile."""

    type_name: str
    fields: tuple[tuple[str, Node], ...] = ()


@dataclass(frozen=True, slots=True)
class Cond(Node):
    cond: Node
    then: Node
    orelse: Node


@dataclass(frozen=True, slots=True)
class And(Node):
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class Or(Node):
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class Not(Node):
    operand: Node


@dataclass(frozen=True, slots=True)
class Op(Node):
    """A binary operator (== != < <= > >= in + - * / %) or unary minus (`neg`, right unused)."""

    op: str
    left: Node
    right: Node | None


# -- parser ------------------------------------------------------------------------------
_PARSER: lark.Lark | None = None
_PARSER_LOCK = threading.Lock()


def lark_parser() -> lark.Lark:
    """The Lark parser of cel-python's grammar, private to Alyx (built once, thread-safe)."""
    global _PARSER
    with _PARSER_LOCK:
        if _PARSER is None:
            grammar = _extended(_celpy_grammar().read_text())
            _PARSER = lark.Lark(
                grammar,
                parser="lalr",
                start="expr",
                g_regex_flags=re.M,
                lexer_callbacks={"IDENT": _ambiguous_literals},
                propagate_positions=True,
                maybe_placeholders=False,
                priority="invert",
            )
        return _PARSER


def _celpy_grammar() -> Path:
    """cel-python's grammar file, found without importing cel-python (about 5 MiB of
    every server process, needed only by the fallback evaluator, cel.py)."""
    spec = importlib.util.find_spec("celpy")
    if spec is None or spec.origin is None:  # pragma: no cover - a declared dependency
        raise ModuleNotFoundError("cel-python (celpy) is not installed")
    return Path(spec.origin).parent / "cel.lark"


def _ambiguous_literals(token: lark.Token) -> lark.Token:
    """`true` and `false` lexed as identifiers are boolean literals (what cel-python's
    `CELParser.ambiguous_literals` does for its own parser)."""
    if token.value in ("true", "false"):
        return lark.Token("BOOL_LIT", token.value)
    return token


# CEL's optional syntax, which cel-python 0.5.0's grammar lacks: `a.?b`, `a[?b]`,
# `[?x]` and `{?k: v}`; list and map literals may end with a comma.
_GRAMMAR_EDITS = (
    ("member         : member_dot | member_dot_arg | member_index | member_object | primary",
     "member         : member_dot | member_dot_opt | member_dot_arg | member_index | member_index_opt"
     " | member_object | primary\n"
     'member_dot_opt : member "." "?" IDENT\n'
     'member_index_opt : member "[" "?" expr "]"'),
    ('list_lit       : "[" [exprlist] "]"',
     'list_lit       : "[" [listinits] "]"\n'
     'listinits      : [opt_mark] expr ("," [opt_mark] expr)* [","]\n'
     'opt_mark       : "?"'),
    ('mapinits       : expr ":" expr ("," expr ":" expr)*',
     'mapinits       : [opt_mark] expr ":" expr ("," [opt_mark] expr ":" expr)* [","]'),
)  # fmt: skip


def _extended(grammar: str) -> str:
    for old, new in _GRAMMAR_EDITS:
        if old not in grammar:
            raise RuntimeError(f"cel-python's grammar changed: cannot find {old!r}")
        grammar = grammar.replace(old, new)
    return grammar


def parse(text: str, limits: SizeLimits = RULE_LIMITS) -> Node:
    """Parse CEL text; CelSyntaxError with line and column when it is not valid CEL,
    CelLimitError when it breaks `limits` (measured before parsing, depth while building).

    The trees of the last texts parsed are kept (they are immutable): a schema compiled
    again with its rules unchanged (a deploy, a reload, every worker staging the same
    schema.yaml) does not parse them again, about 1.5 ms each. Errors are not kept."""
    return _parse_cached(text, limits)


@lru_cache(maxsize=1024)
def _parse_cached(text: str, limits: SizeLimits) -> Node:
    problem = size_problem(text, limits)
    if problem is not None:
        line, column = _line_column(text, problem.offset)
        raise CelLimitError(problem.message, line, column)
    try:
        tree = lark_parser().parse(text)
    except lark.exceptions.UnexpectedInput as e:
        token = getattr(e, "token", None)
        if isinstance(e, lark.exceptions.UnexpectedEOF) or (token is not None and token.type == "$END"):
            lines = text.splitlines() or [""]
            raise CelSyntaxError(
                "syntax error: unexpected end of expression", len(lines), len(lines[-1]) + 1
            ) from e
        pos = e.pos_in_stream or 0
        found = str(token) if token is not None else text[pos : pos + 1]
        raise CelSyntaxError(f"syntax error: unexpected {found!r}", e.line or 1, e.column or 1) from e
    except lark.exceptions.LarkError as e:
        raise CelSyntaxError(f"syntax error: {e}") from e
    return _Builder(limits.max_depth).build(tree)


def _line_column(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def _pos(t: lark.Tree[Any] | lark.Token) -> tuple[int, int]:
    if isinstance(t, lark.Token):
        return t.line or 1, t.column or 1
    meta = t.meta
    return getattr(meta, "line", 1), getattr(meta, "column", 1)


# Rules that, with one child, are that child: skipped in a loop, not by recursion, so a
# parenthesised expression costs one level of the builder, not ten.
_PASS_THROUGH = frozenset(
    {"expr", "conditionalor", "conditionaland", "relation", "addition", "multiplication",
     "unary", "member", "primary", "paren_expr"}
)  # fmt: skip


class _Builder:
    """Lark tree -> Node, following cel.lark's rule names; refuses a tree deeper than
    `max_depth` nodes before recursing further (the compilers recurse as deep)."""

    def __init__(self, max_depth: int) -> None:
        self._depth = 0
        self._max_depth = max_depth

    def build(self, t: lark.Tree[Any]) -> Node:
        while str(t.data) in _PASS_THROUGH and len(t.children) == 1 and isinstance(t.children[0], lark.Tree):
            t = t.children[0]
        self._depth += 1
        try:
            if self._depth > self._max_depth:
                line, col = _pos(t)
                raise CelLimitError(
                    f"the expression is nested more than {self._max_depth} levels deep; "
                    f"the limit is {self._max_depth} (split it into simpler conditions)",
                    line,
                    col,
                )
            method = getattr(self, "_" + str(t.data), None)
            if method is None:
                line, col = _pos(t)
                raise CelSyntaxError(f"unsupported syntax: {t.data}", line, col)
            node: Node = method(t)
            return node
        finally:
            self._depth -= 1

    def _only(self, t: lark.Tree[Any]) -> Node:
        return self.build(t.children[0])

    _primary = _member = _paren_expr = _only

    def _expr(self, t: lark.Tree[Any]) -> Node:
        if len(t.children) == 1:
            return self.build(t.children[0])
        c, a, b = (self.build(x) for x in t.children)
        return Cond(*_pos(t), c, a, b)

    def _conditionalor(self, t: lark.Tree[Any]) -> Node:
        return self._chain(t, Or)

    def _conditionaland(self, t: lark.Tree[Any]) -> Node:
        return self._chain(t, And)

    def _chain(self, t: lark.Tree[Any], kind: type[And] | type[Or]) -> Node:
        """`a && b && c` (or `||`) as a balanced tree: the operators are associative
        (errors are absorbed in either order), and a balanced tree is log2(n) deep."""
        rights: list[lark.Tree[Any]] = []
        data = t.data
        while t.data == data and len(t.children) == 2:
            rights.append(t.children[1])
            t = t.children[0]
        operands = [t, *reversed(rights)]
        extra = max((len(operands) - 1).bit_length() - 1, 0)  # levels under the root
        self._depth += extra
        try:
            nodes = [self.build(x) for x in operands]
        finally:
            self._depth -= extra
        return _balanced(nodes, kind)

    def _binary(self, t: lark.Tree[Any]) -> Node:
        if len(t.children) == 1:
            return self.build(t.children[0])
        op_tree, right_tree = t.children
        op = _BINARY[str(op_tree.data)]
        left = self.build(op_tree.children[0])
        return Op(*_pos(op_tree), op, left, self.build(right_tree))

    _relation = _addition = _multiplication = _binary

    def _unary(self, t: lark.Tree[Any]) -> Node:
        if len(t.children) == 1:
            return self.build(t.children[0])
        op_tree, operand_tree = t.children
        operand = self.build(operand_tree)
        if op_tree.data == "unary_not":
            return Not(*_pos(t), operand)
        return Op(*_pos(t), "neg", operand, None)

    def _member_dot(self, t: lark.Tree[Any]) -> Node:
        operand, name = t.children
        return Select(*_pos(name), self.build(operand), str(name))

    def _member_dot_opt(self, t: lark.Tree[Any]) -> Node:
        operand, name = t.children
        return Select(*_pos(name), self.build(operand), str(name), optional=True)

    def _member_dot_arg(self, t: lark.Tree[Any]) -> Node:
        operand, name, *rest = t.children
        args = self._args(rest)
        line, col = _pos(name)
        target = self.build(operand)
        function = str(name)
        if isinstance(target, Ident) and not target.root:
            if target.name in NAMESPACES:
                return Call(line, col, f"{target.name}.{function}", None, args)
            if target.name == "cel" and function == "bind":
                if len(args) != 3 or not isinstance(args[0], Ident):
                    raise CelSyntaxError(
                        "cel.bind() takes a variable name, a value and an expression", line, col
                    )
                return Comprehension(line, col, "bind", args[1], args[0].name, args[2])
        if function in MACROS:
            return _macro(line, col, function, target, args)
        return Call(line, col, function, target, args)

    def _member_index(self, t: lark.Tree[Any]) -> Node:
        operand, index = t.children
        return Index(*_pos(t), self.build(operand), self.build(index))

    def _member_index_opt(self, t: lark.Tree[Any]) -> Node:
        operand, index = t.children
        return Index(*_pos(t), self.build(operand), self.build(index), optional=True)

    def _member_object(self, t: lark.Tree[Any]) -> Node:
        operand, *rest = t.children
        type_node = self.build(operand)
        parts: list[str] = []
        while isinstance(type_node, Select):
            parts.append(type_node.field)
            type_node = type_node.operand
        if not isinstance(type_node, Ident):
            raise CelSyntaxError("a message literal needs a type name, such as Type{field: value}", *_pos(t))
        parts.append(type_node.name)
        fields: list[tuple[str, Node]] = []
        if rest:
            children = rest[0].children
            fields = [(str(children[i]), self.build(children[i + 1])) for i in range(0, len(children), 2)]
        return Message(*_pos(t), ".".join(reversed(parts)), tuple(fields))

    def _args(self, rest: list[Any]) -> tuple[Node, ...]:
        if not rest:
            return ()
        return tuple(self.build(x) for x in rest[0].children)

    def _ident_arg(self, t: lark.Tree[Any]) -> Node:
        name, *rest = t.children
        args = self._args(rest)
        line, col = _pos(name)
        if str(name) == "has":
            if len(args) != 1 or not isinstance(args[0], Select):
                raise CelSyntaxError("has() takes one field selection, such as has(doc.title)", line, col)
            sel = args[0]
            return Select(sel.line, sel.column, sel.operand, sel.field, test_only=True)
        return Call(line, col, str(name), None, args)

    def _dot_ident_arg(self, t: lark.Tree[Any]) -> Node:
        return self._ident_arg(t)

    def _ident(self, t: lark.Tree[Any]) -> Node:
        return Ident(*_pos(t), str(t.children[0]))

    def _dot_ident(self, t: lark.Tree[Any]) -> Node:
        return Ident(*_pos(t), str(t.children[0]), root=True)

    def _marked(self, children: list[Any]) -> tuple[list[Node], frozenset[int]]:
        """Expressions of a list or map literal, and the positions preceded by `?`."""
        nodes: list[Node] = []
        marked: set[int] = set()
        for child in children:
            if isinstance(child, lark.Tree) and child.data == "opt_mark":
                marked.add(len(nodes))
            else:
                nodes.append(self.build(child))
        return nodes, frozenset(marked)

    def _list_lit(self, t: lark.Tree[Any]) -> Node:
        if not t.children:
            return ListLit(*_pos(t), ())
        items, marked = self._marked(t.children[0].children)
        return ListLit(*_pos(t), tuple(items), marked)

    def _map_lit(self, t: lark.Tree[Any]) -> Node:
        if not t.children:
            return MapLit(*_pos(t), ())
        parts, marked = self._marked(t.children[0].children)
        entries = tuple((parts[i], parts[i + 1]) for i in range(0, len(parts), 2))
        return MapLit(*_pos(t), entries, frozenset(i // 2 for i in marked))

    def _literal(self, t: lark.Tree[Any]) -> Node:
        token = t.children[0]
        assert isinstance(token, lark.Token)
        line, col = _pos(token)
        try:
            return Lit(line, col, _literal_value(token))
        except ValueError as e:
            raise CelSyntaxError(str(e), line, col) from e


_BINARY = {
    "relation_lt": "<", "relation_le": "<=", "relation_gt": ">", "relation_ge": ">=",
    "relation_eq": "==", "relation_ne": "!=", "relation_in": "in",
    "addition_add": "+", "addition_sub": "-",
    "multiplication_mul": "*", "multiplication_div": "/", "multiplication_mod": "%",
}  # fmt: skip


def _balanced(nodes: list[Node], kind: type[And] | type[Or]) -> Node:
    if len(nodes) == 1:
        return nodes[0]
    middle = len(nodes) // 2
    left, right = _balanced(nodes[:middle], kind), _balanced(nodes[middle:], kind)
    return kind(left.line, left.column, left, right)


_MACRO_ARITY = {
    "all": (2, 3), "exists": (2, 3), "exists_one": (2,), "existsOne": (2, 3), "filter": (2,),
    "map": (2, 3), "transformList": (3, 4), "transformMap": (3, 4), "optMap": (2,), "optFlatMap": (2,),
}  # fmt: skip
_TWO_VARIABLES = frozenset({"transformList", "transformMap"})


def _macro(line: int, col: int, name: str, target: Node, args: tuple[Node, ...]) -> Node:
    if len(args) not in _MACRO_ARITY[name] or not isinstance(args[0], Ident):
        raise CelSyntaxError(f"{name}() takes a variable name and an expression", line, col)
    var = args[0].name
    kind = "exists_one" if name == "existsOne" else name
    if name == "map":
        if len(args) == 3:
            return Comprehension(line, col, "map", target, var, args[2], filter=args[1])
        return Comprehension(line, col, "map", target, var, args[1])
    if len(args) == 2:
        return Comprehension(line, col, kind, target, var, args[1])
    if not isinstance(args[1], Ident) or args[1].name == var:
        raise CelSyntaxError(f"{name}() takes two different variable names and an expression", line, col)
    var2 = args[1].name
    if name in _TWO_VARIABLES and len(args) == 4:
        return Comprehension(line, col, kind, target, var, args[3], filter=args[2], var2=var2)
    if len(args) == 4:
        raise CelSyntaxError(f"{name}() takes two variable names and an expression", line, col)
    return Comprehension(line, col, kind, target, var, args[2], var2=var2)


# -- literals ----------------------------------------------------------------------------
def _literal_value(token: lark.Token) -> Any:
    kind, text = token.type, str(token)
    if kind == "INT_LIT":
        value = _int_text(text)
        if not INT64_MIN <= value <= INT64_MAX:
            raise ValueError(f"integer literal out of range: {text}")
        return value
    if kind == "UINT_LIT":
        value = _int_text(text[:-1])
        if not 0 <= value <= UINT64_MAX:
            raise ValueError(f"unsigned integer literal out of range: {text}")
        return UInt(value)
    if kind == "FLOAT_LIT":
        return float(text)
    if kind == "BOOL_LIT":
        return text == "true"
    if kind == "NULL_LIT":
        return None
    if kind in ("STRING_LIT", "MLSTRING_LIT"):
        return _string_text(text, as_bytes=False)
    if kind == "BYTES_LIT":
        return _string_text(text[1:], as_bytes=True)
    raise ValueError(f"unknown literal {text!r}")


def _int_text(text: str) -> int:
    sign = -1 if text.startswith("-") else 1
    body = text.lstrip("-")
    return sign * (int(body[2:], 16) if body[:2].lower() == "0x" else int(body))


_SIMPLE_ESCAPES = {
    "a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
    '"': '"', "'": "'", "\\": "\\", "`": "`", "?": "?",
}  # fmt: skip


def _string_text(text: str, *, as_bytes: bool) -> Any:
    raw = text[0] in "rR"
    if raw:
        text = text[1:]
    quote = text[:3] if text[:3] in ('"""', "'''") else text[0]
    body = text[len(quote) : -len(quote)]
    if raw:
        return body.encode() if as_bytes else body
    out = bytearray()
    i = 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            out += c.encode("utf-8", "surrogatepass")
            i += 1
            continue
        i = _escape(body, i + 1, out, as_bytes)
    if as_bytes:
        return bytes(out)
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError("invalid UTF-8 in string literal") from e


def _escape(body: str, i: int, out: bytearray, as_bytes: bool) -> int:
    if i >= len(body):
        raise ValueError("string literal ends with a backslash")
    c = body[i]
    if c in _SIMPLE_ESCAPES:
        out += _SIMPLE_ESCAPES[c].encode()
        return i + 1
    if c in "xX":
        code, end = int(body[i + 1 : i + 3], 16), i + 3
    elif c in "uU":
        width = 4 if c == "u" else 8
        if as_bytes:
            raise ValueError("\\u escapes are not allowed in bytes literals")
        code, end = int(body[i + 1 : i + 1 + width], 16), i + 1 + width
        if 0xD800 <= code <= 0xDFFF or code > 0x10FFFF:
            raise ValueError("invalid unicode escape")
    elif c in "0123":
        code, end = int(body[i : i + 3], 8), i + 3
    else:
        raise ValueError(f"invalid escape sequence \\{c}")
    out += bytes([code]) if as_bytes else chr(code).encode()
    return end
