"""What a caller's CEL expression may read: the fields that caller may see in a response.

A caller's `where` (REST `where=` and a realtime subscribe `where`) is checked here before
it runs; anything else it names is refused as an unknown field, so its answer can never
depend on a hidden value (a filter that silently came out false would still leak one bit
per request, and a binary search recovers a number in a dozen requests).

    doc     the collection's fields except `internal` ones, for every caller, admins
            included (no response shows them)
    auth    id, email, role, verified, metadata: what the account holder sees of
            themself; not `app_metadata`, which only the admin API shows

Both may only be read one field at a time: `doc.f`, `has(doc.f)`, `doc['f']`. Used as a
whole (`doc.size()`, `'f' in doc`, `doc == {...}`, `size(doc)`, a macro over `doc`, an index
computed at run time) they would reach the hidden fields too, so that is refused, except
`auth == null` / `auth != null`. So is a protobuf message literal
(`google.protobuf.Int64Value{value: doc.x}`): the syntax tree does not keep its fields, and
the cel-python interpreter that would run it sees the whole document.

Collection rules in schema.yaml are not checked here: they see every field.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

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

__all__ = ["WHERE_AUTH_FIELDS", "check_field_names", "check_where_reads"]

WHERE_AUTH_FIELDS = ("id", "email", "role", "verified", "metadata")


def check_where_reads(node: Node, doc_fields: Collection[str], collection: str) -> None:
    """Refuse (CelCompileError, with the column) any read of `doc` other than one of
    `doc_fields` by name, and of `auth` other than WHERE_AUTH_FIELDS; the message lists
    only what may be read."""
    _Reads({"doc": doc_fields, "auth": WHERE_AUTH_FIELDS}, collection).walk(node, frozenset())


def check_field_names(node: Node, fields: Mapping[str, Collection[str]], collection: str) -> None:
    """Refuse (CelCompileError, with the column) a field read by name, `v.f`, `has(v.f)` or
    `v['f']`, of a variable `v` of `fields` whose `f` is not among `fields[v]` (the
    collection's fields). Unlike a where, the variables may be used as a whole (`previous
    == null`): this only catches names that cannot exist (an after-write hook's `when`)."""
    _Names(fields, collection).walk(node, frozenset())


class _Names:
    def __init__(self, fields: Mapping[str, Collection[str]], collection: str) -> None:
        self.fields = fields
        self.collection = collection

    def check(self, var: str, name: str, written: str, node: Node) -> None:
        if name not in self.fields[var]:
            known = ", ".join(self.fields[var]) or "(none)"
            raise CelCompileError(
                f"unknown field {name!r} in {written}; fields of {self.collection} are: {known}",
                node.line,
                node.column,
            )

    def var(self, node: Node, scope: frozenset[str]) -> str | None:
        if not isinstance(node, Ident):
            return None
        name = node.name
        return name if name in self.fields and (name not in scope or node.root) else None

    def walk(self, node: Node, scope: frozenset[str]) -> None:
        if isinstance(node, Select) and (var := self.var(node.operand, scope)) is not None:
            self.check(var, node.field, f"{var}.{node.field}", node)
        elif (
            isinstance(node, Index)
            and (var := self.var(node.operand, scope)) is not None
            and isinstance(node.index, Lit)
            and isinstance(node.index.value, str)
        ):
            self.check(var, node.index.value, f"{var}[{node.index.value!r}]", node)
        elif isinstance(node, Comprehension):
            self.walk(node.range, scope)
            inner = scope | node.variables
            self.walk(node.body, inner)
            if node.filter is not None:
                self.walk(node.filter, inner)
        else:
            for child in _children(node):
                self.walk(child, scope)


class _Reads:
    def __init__(self, readable: Mapping[str, Collection[str]], collection: str) -> None:
        self.readable = readable
        self.collection = collection

    def known(self, var: str) -> str:
        names = ", ".join(self.readable[var]) or "(none)"
        if var == "doc":
            return f"fields of {self.collection} are: {names}"
        return f"a where may read {var}.{{{names}}}"

    def field(self, var: str, name: str, written: str, node: Node) -> None:
        if name not in self.readable[var]:
            raise CelCompileError(
                f"unknown field {name!r} in {written}; {self.known(var)}", node.line, node.column
            )

    def var(self, node: Node, scope: frozenset[str]) -> str | None:
        """The restricted variable `node` names (`doc`, `auth`), unless a macro shadows it."""
        if not isinstance(node, Ident):
            return None
        name = node.name
        return name if name in self.readable and (name not in scope or node.root) else None

    def walk(self, node: Node, scope: frozenset[str]) -> None:
        if isinstance(node, Select) and (var := self.var(node.operand, scope)) is not None:
            self.field(var, node.field, f"{var}.{node.field}", node)
        elif isinstance(node, Index) and (var := self.var(node.operand, scope)) is not None:
            index = node.index
            if not (isinstance(index, Lit) and isinstance(index.value, str)):
                raise CelCompileError(
                    f"{var}[...] takes a field name in quotes, such as {var}['id'], or write {var}.id",
                    node.line,
                    node.column,
                )
            self.field(var, index.value, f"{var}[{index.value!r}]", node)
        elif isinstance(node, Ident) and (var := self.var(node, scope)) is not None:
            raise CelCompileError(
                f"{var} can only be read one field at a time ({var}.<field>), not as a whole; "
                f"{self.known(var)}",
                node.line,
                node.column,
            )
        elif isinstance(node, Op) and self._auth_null_test(node, scope):
            return
        elif isinstance(node, Message):
            raise CelCompileError(
                "message literals (Type{field: value}) are not available in a where; "
                "Alyx documents hold no protobuf messages",
                node.line,
                node.column,
            )
        elif isinstance(node, Comprehension):
            self.walk(node.range, scope)
            inner = scope | node.variables
            self.walk(node.body, inner)
            if node.filter is not None:
                self.walk(node.filter, inner)
        else:
            for child in _children(node):
                self.walk(child, scope)

    def _auth_null_test(self, node: Op, scope: frozenset[str]) -> bool:
        """`auth == null` or `auth != null` (either order): whether the caller signed in,
        which the caller knows."""
        if node.op not in ("==", "!=") or node.right is None:
            return False
        sides = (node.left, node.right)
        return any(
            self.var(a, scope) == "auth" and isinstance(b, Lit) and b.value is None
            for a, b in (sides, sides[::-1])
        )


def _children(node: Node) -> list[Node]:
    if isinstance(node, Select | Not):
        return [node.operand]
    if isinstance(node, Index):
        return [node.operand, node.index]
    if isinstance(node, Call):
        return ([node.target] if node.target is not None else []) + list(node.args)
    if isinstance(node, ListLit):
        return list(node.items)
    if isinstance(node, MapLit):
        return [x for entry in node.entries for x in entry]
    if isinstance(node, Cond):
        return [node.cond, node.then, node.orelse]
    if isinstance(node, Op):
        return [node.left] if node.right is None else [node.left, node.right]
    if isinstance(node, And | Or):
        return [node.left, node.right]
    return []  # Lit, Ident: no sub-expressions
