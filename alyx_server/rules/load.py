"""Compiling the rules of a schema, and `where=` expressions, with located errors.

A rule that does not parse, names a variable other than `doc`, `auth` and `request`,
names a `doc.<field>` the collection lacks, or calls an unknown function stops the
schema load with a `RuleError` naming the file, line and column (the rule's place in
schema.yaml plus the column inside the CEL text), the collection and the action.
`load_schema_rules(path)` reads schema.yaml and compiles its rules: the one entry point
by which the CLI's commands and the server accept a schema file.

An after-write hook's `when` (a function manifest's `on.when`, over `doc`, `previous`,
`event` and `user`) is checked at load the same way against its collection's fields:
`check_hook_when` refuses a syntax error or a `doc.<field>` / `previous.<field>` the
collection lacks with a RuleError naming the manifest's file, line and column.

A caller's `where` (REST `where=`, a realtime subscribe `where`) is held to more: at most
1024 characters and 200 tokens (rules.limits, checked before parsing), and it reads only
what the caller may see in a response (rules.visible: never an `internal` field nor
`auth.app_metadata`, never `doc` as a whole). A bad one answers 400 INVALID_QUERY (REST)
or an INVALID_FILTER error frame (realtime) with the CEL message and column.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from alyx_server.errors import InvalidQuery, Location, RuleError
from alyx_server.rules.compile_py import CompileEnv
from alyx_server.rules.compiled import CompiledRule
from alyx_server.rules.limits import WHERE_LIMITS
from alyx_server.rules.syntax import CelCompileError, Node, parse
from alyx_server.rules.visible import check_field_names, check_where_reads
from alyx_server.schema.loader import load_schema
from alyx_server.schema.model import ACTIONS, Collection, Schema

__all__ = [
    "HOOK_VARIABLES",
    "RULE_VARIABLES",
    "SchemaRules",
    "check_hook_when",
    "compile_rule",
    "compile_schema_rules",
    "compile_where",
    "load_schema_rules",
    "schema_tables",
    "visible_fields",
    "where_in_file",
]

RULE_VARIABLES = frozenset({"doc", "auth", "request"})
HOOK_VARIABLES = frozenset({"doc", "previous", "event", "user"})


Tables = Mapping[str, Collection]
"""The schema's collections by name: what a rule's lookups (get, exists) may read."""


def _env(collection: Collection, tables: Tables | None = None) -> CompileEnv:
    fields = {f.name: f.type for f in collection.fields}
    return CompileEnv(variables=RULE_VARIABLES, doc_fields=fields, collection=collection.name, tables=tables)


def _compile(
    collection: Collection,
    text: str,
    label: str,
    node: Node | None = None,
    tables: Tables | None = None,
    lookup_depth: int | None = None,
) -> CompiledRule:
    node = parse(text) if node is None else node
    return CompiledRule(text, node, collection, _env(collection, tables), label, lookup_depth)


def schema_tables(schema: Schema) -> Tables:
    """The collections a rule of `schema` may look up."""
    return {c.name: c for c in schema.collections}


def _shown(text: str, limit: int = 200) -> str:
    """The expression as quoted in a message: long ones cut, so an error stays readable."""
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}... ({len(text)} characters)"


def where_in_file(base: Location | None, error: CelCompileError) -> Location | None:
    """Where in the file a CEL error is: `base` is where the expression's text begins."""
    if base is None:
        return None
    if error.line > 1 or base.line is None:
        line = (base.line or 1) + error.line - 1
        return Location(base.file, line, error.column, base.path)
    return Location(base.file, base.line, (base.column or 1) + error.column - 1, base.path)


def compile_rule(
    collection: Collection,
    action: str,
    text: str,
    tables: Tables | None = None,
    lookup_depth: int | None = None,
) -> CompiledRule:
    """One rule of `collection`; RuleError with file, line, column, collection and action.

    With `tables` (`schema_tables`) the rule may look up those collections, nested at most
    `lookup_depth` deep (the project's `rules.lookup_depth`; None: the server's)."""
    label = f"{collection.name}.{action}"
    try:
        return _compile(collection, text, label, tables=tables, lookup_depth=lookup_depth)
    except CelCompileError as e:
        where = where_in_file(collection.rule_locations.get(action), e)
        message = (
            f"the {action} rule of {collection.name} does not compile: {e.message} "
            f"(CEL column {e.column}: {_shown(text)})"
        )
        raise RuleError(message, where) from e
    except RecursionError as e:
        # A parser depth limit refuses this first; this keeps a located line regardless.
        message = (
            f"the {action} rule of {collection.name} is nested too deeply to compile: "
            "use fewer nested parentheses or split it into simpler conditions"
        )
        raise RuleError(message, collection.rule_locations.get(action)) from e


def check_hook_when(collection: Collection, text: str, where: Location | None, function: str) -> Node:
    """The syntax tree of a hook's `when`, its `doc.` and `previous.` fields checked against
    `collection`; RuleError at the manifest's file, line and column (`where` is the start of
    the expression's text) when it does not parse or names a field the collection lacks."""
    try:
        node = parse(text)
        names = tuple(f.name for f in collection.fields)
        check_field_names(node, {"doc": names, "previous": names}, collection.name)
    except CelCompileError as e:
        message = (
            f"the when of function {function}'s hook on {collection.name} does not compile: "
            f"{e.message} (CEL column {e.column}: {_shown(text)})"
        )
        raise RuleError(message, where_in_file(where, e)) from e
    return node


@dataclass(frozen=True, slots=True)
class SchemaRules:
    """Every rule of a schema compiled: (collection, action) -> CompiledRule, None = no rule."""

    schema: Schema
    rules: Mapping[tuple[str, str], CompiledRule | None] = field(default_factory=dict)

    def get(self, collection: str, action: str) -> CompiledRule | None:
        return self.rules.get((collection, action))


def compile_schema_rules(schema: Schema, lookup_depth: int | None = None) -> SchemaRules:
    """Compile all rules at schema load; the first bad rule raises RuleError.

    `lookup_depth` is the project's `rules.lookup_depth` (None: the one the server set
    with `lookups.set_lookup_depth` when it started)."""
    out: dict[tuple[str, str], CompiledRule | None] = {}
    tables = schema_tables(schema)
    for c in schema.collections:
        for action in ACTIONS:
            text = c.rules.get(action)
            out[(c.name, action)] = (
                None if text is None else compile_rule(c, action, text, tables, lookup_depth)
            )
    return SchemaRules(schema, out)


def load_schema_rules(path: Path, lookup_depth: int | None = None) -> SchemaRules:
    """Read schema.yaml at `path` and compile every rule: the one check of a schema file.

    Every command that reads schema.yaml (`migrate`, `generate`, `db seed|reset`, the
    server) goes through this, so a schema the server would refuse (a rule that does not
    parse or names an unknown field, lookups nested deeper than the project's
    `rules.lookup_depth`, passed as `lookup_depth`) is refused by all of them with the same
    located SchemaError or RuleError, before anything is written.
    """
    return compile_schema_rules(load_schema(path), lookup_depth)


def visible_fields(collection: Collection) -> tuple[str, ...]:
    """The fields a caller's `where` may read: those any response shows (not `internal`)."""
    return tuple(f.name for f in collection.fields if not f.internal)


def compile_where(collection: Collection, text: str, visible: Sequence[str] | None = None) -> CompiledRule:
    """A caller's `where` expression over `doc` (and `auth`, `request`), reading only the
    `visible` fields (default: `visible_fields`); InvalidQuery when it is bad or reads more."""
    shown = visible_fields(collection) if visible is None else tuple(visible)
    try:
        node = parse(text, WHERE_LIMITS)
        check_where_reads(node, shown, collection.name)
        return _compile(collection, text, f"{collection.name} where", node)
    except CelCompileError as e:
        raise InvalidQuery(f"invalid where: {e.message} (at column {e.column} of {_shown(text)})") from e
