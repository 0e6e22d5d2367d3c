"""Compiling the rules of a schema, and `where=` expressions, with located errors.

A rule that does not parse, names a variable other than `doc`, `auth` and `request`,
names a `doc.<field>` the collection lacks, or calls an unknown function stops the
schema load with a `RuleError` naming the file, line and column (the rule's place in
schema.yaml plus the column inside the CEL text), the collection and the action.
A bad `where=` answers 400 INVALID_QUERY with the CEL message and column.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from alyx_server.errors import InvalidQuery, Location, RuleError
from alyx_server.rules.compile_py import CompileEnv
from alyx_server.rules.compiled import CompiledRule
from alyx_server.rules.syntax import CelCompileError, parse
from alyx_server.schema.model import ACTIONS, Collection, Schema

__all__ = ["RULE_VARIABLES", "SchemaRules", "compile_rule", "compile_schema_rules", "compile_where"]

RULE_VARIABLES = frozenset({"doc", "auth", "request"})


def _env(collection: Collection) -> CompileEnv:
    fields = {f.name: f.type for f in collection.fields}
    return CompileEnv(variables=RULE_VARIABLES, doc_fields=fields, collection=collection.name)


def _compile(collection: Collection, text: str, label: str) -> CompiledRule:
    node = parse(text)
    return CompiledRule(text, node, collection, _env(collection), label)


def _where_in_file(base: Location | None, error: CelCompileError) -> Location | None:
    if base is None:
        return None
    if error.line > 1 or base.line is None:
        line = (base.line or 1) + error.line - 1
        return Location(base.file, line, error.column, base.path)
    return Location(base.file, base.line, (base.column or 1) + error.column - 1, base.path)


def compile_rule(collection: Collection, action: str, text: str) -> CompiledRule:
    """One rule of `collection`; RuleError with file, line, column, collection and action."""
    label = f"{collection.name}.{action}"
    try:
        return _compile(collection, text, label)
    except CelCompileError as e:
        where = _where_in_file(collection.rule_locations.get(action), e)
        message = (
            f"the {action} rule of {collection.name} does not compile: {e.message} "
            f"(CEL column {e.column}: {text!r})"
        )
        raise RuleError(message, where) from e
    except RecursionError as e:
        # A parser depth limit refuses this first; this keeps a located line regardless.
        message = (
            f"the {action} rule of {collection.name} is nested too deeply to compile: "
            "use fewer nested parentheses or split it into simpler conditions"
        )
        raise RuleError(message, collection.rule_locations.get(action)) from e


@dataclass(frozen=True, slots=True)
class SchemaRules:
    """Every rule of a schema compiled: (collection, action) -> CompiledRule, None = no rule."""

    schema: Schema
    rules: Mapping[tuple[str, str], CompiledRule | None] = field(default_factory=dict)

    def get(self, collection: str, action: str) -> CompiledRule | None:
        return self.rules.get((collection, action))


def compile_schema_rules(schema: Schema) -> SchemaRules:
    """Compile all rules at schema load; the first bad rule raises RuleError."""
    out: dict[tuple[str, str], CompiledRule | None] = {}
    for c in schema.collections:
        for action in ACTIONS:
            text = c.rules.get(action)
            out[(c.name, action)] = None if text is None else compile_rule(c, action, text)
    return SchemaRules(schema, out)


def compile_where(collection: Collection, text: str) -> CompiledRule:
    """A `where=` expression over `doc` (and `auth`, `request`); InvalidQuery when it is bad."""
    try:
        return _compile(collection, text, f"{collection.name} where")
    except CelCompileError as e:
        raise InvalidQuery(f"invalid where: {e.message} at column {e.column}: {text!r}") from e
