"""The schema differ: what changed between two schemas, and which changes are destructive.

`diff_schemas(old, new)` lists every change as a `Change` with a console summary and the
reason it is safe or destructive (SPEC §5). Safe changes apply automatically; destructive
ones need a migration file. A rename shows up as a drop plus an add: the differ cannot tell
a rename from two unrelated edits, and guessing would risk data.

`precheck(conn, diff)` looks at the stored rows and reports those a stricter change cannot
keep ("3 rows have NULL in posts.slug"). Applying a diff lives in `schema.transition`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from alyx_server.schema.conversions import type_change_is_safe
from alyx_server.schema.ddl import quote
from alyx_server.schema.model import ACTIONS, Collection, Field, Index, Reference, Schema
from alyx_server.schema.prechecks import (
    collection_problems,
    field_problems,
    field_sources,
    has_sql_default,
    index_problems,
)

__all__ = [
    "Change",
    "ChangeKind",
    "SchemaDiff",
    "creation_order",
    "diff_schemas",
    "precheck",
    "type_change_is_safe",
]

ChangeKind = Literal[
    "add_collection",
    "drop_collection",
    "add_field",
    "drop_field",
    "alter_field",
    "add_index",
    "drop_index",
    "change_rules",
]

Subject = Field | Collection | Index | None


@dataclass(frozen=True)
class Change:
    """One difference between two schemas.

    `name` is the field or index name (the action for `change_rules`, None for a whole
    collection). `summary` is the short console form, `reason` says what the change does
    and, when `destructive`, why it needs a migration file.
    """

    kind: ChangeKind
    collection: str
    name: str | None
    destructive: bool
    summary: str
    reason: str
    old: Subject = None
    new: Subject = None


@dataclass(frozen=True)
class SchemaDiff:
    """Every change from `old` to `new`, in the order they are listed to users."""

    old: Schema
    new: Schema
    changes: tuple[Change, ...]

    @property
    def safe(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if not c.destructive)

    @property
    def destructive(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.destructive)

    def __bool__(self) -> bool:
        return bool(self.changes)

    def for_collection(self, name: str) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.collection == name)

    def summary(self) -> str:
        """One line per change; destructive ones carry their reason."""
        if not self.changes:
            return "no schema changes"
        lines = []
        for c in self.changes:
            line = c.summary
            if c.destructive:
                line += f"  (destructive: {c.reason})"
            lines.append(line)
        return "\n".join(lines)


def diff_schemas(old: Schema, new: Schema) -> SchemaDiff:
    """Compare two schemas; collections and fields are matched by name (order is ignored)."""
    changes: list[Change] = []
    added = [c for c in new if c.name not in old]
    for c in creation_order(added):
        changes.append(
            Change(
                "add_collection",
                c.name,
                None,
                False,
                f"+ {c.name}",
                f"creates collection {c.name}",
                None,
                c,
            )
        )
    for c in new:
        before = old.get(c.name)
        if before is not None:
            changes.extend(_collection_changes(before, c))
    for c in old:
        if c.name not in new:
            changes.append(
                Change(
                    "drop_collection",
                    c.name,
                    None,
                    True,
                    f"- {c.name}",
                    f"drops collection {c.name} and all its rows",
                    c,
                    None,
                )
            )
    return SchemaDiff(old, new, tuple(changes))


def creation_order(collections: Iterable[Collection]) -> list[Collection]:
    """Collections ordered so that a referenced one comes before those referencing it.

    References outside the given set, self-references and cycles do not constrain the
    order (SQLite accepts a REFERENCES clause to a table that does not exist yet).
    """
    pending = {c.name: c for c in collections}
    out: list[Collection] = []
    visiting: set[str] = set()

    def visit(c: Collection) -> None:
        if c.name not in pending or c.name in visiting:
            return
        visiting.add(c.name)
        for f in c.fields:
            target = pending.get(f.references.collection) if f.references else None
            if target is not None:
                visit(target)
        if c.name in pending:
            out.append(pending.pop(c.name))

    for c in list(pending.values()):
        visit(c)
    return out


def _collection_changes(old: Collection, new: Collection) -> list[Change]:
    """Dropped indexes and fields first, then changed and new fields, new indexes, rules."""
    name = new.name
    old_indexes = {i.name: i for i in old.indexes}
    new_indexes = {i.name: i for i in new.indexes}
    out = [
        Change("drop_index", name, i.name, False, f"- index {i.name}", f"drops index {i.name} on {name}", i)
        for i in old.indexes
        if new_indexes.get(i.name) != i
    ]
    for f in old.fields:
        if new.field(f.name) is None:
            reason = f"drops column {name}.{f.name} and its data"
            out.append(Change("drop_field", name, f.name, True, f"- {name}.{f.name}", reason, f))
    for f in new.fields:
        before = old.field(f.name)
        if before is None:
            out.append(_add_field(name, f))
        elif before != f:
            out.append(_alter_field(name, before, f))
    out.extend(_add_index(name, i) for i in new.indexes if old_indexes.get(i.name) != i)
    for action in ACTIONS:
        if old.rules.get(action) != new.rules.get(action):
            reason = f"changes the {action} rule of {name} (no SQL change)"
            out.append(
                Change("change_rules", name, action, False, f"rules {name}.{action}", reason, old, new)
            )
    return out


def _add_field(collection: str, f: Field) -> Change:
    label = f"{collection}.{f.name}"
    summary = f"+ {label}"
    default = f.default
    shared_default = default is not None and (
        default.kind == "now" or (default.kind == "literal" and default.value is not None)
    )
    if not f.nullable and not has_sql_default(f):
        reason = f"{label} is required and has no default: existing rows have no value for it"
    elif (f.unique or f.primary) and shared_default:
        reason = f"{label} is unique but every existing row would get the same default"
    elif f.references is not None and default is not None and default.kind == "literal":
        target = f"{f.references.collection}.{f.references.field}"
        reason = f"every existing row would reference {default.value!r} in {target}"
    else:
        what = "nullable" if f.nullable else "defaulted"
        return Change("add_field", collection, f.name, False, summary, f"adds {what} column {label}", None, f)
    return Change("add_field", collection, f.name, True, summary, reason, None, f)


def _add_index(collection: str, index: Index) -> Change:
    cols = ", ".join(index.fields)
    if index.unique:
        reason = (
            f"creates unique index {index.name} on {collection}({cols}) "
            "(stricter: existing duplicates are refused)"
        )
    else:
        reason = f"creates index {index.name} on {collection}({cols})"
    return Change(
        "add_index",
        collection,
        index.name,
        index.unique,
        f"+ index {index.name}",
        reason,
        None,
        index,
    )


@dataclass(frozen=True)
class _Aspect:
    short: str
    long: str
    destructive: bool


def _ref_text(ref: Reference | None) -> str:
    return "nothing" if ref is None else f"{ref.collection}.{ref.field}"


def _alter_field(collection: str, old: Field, new: Field) -> Change:
    label = f"{collection}.{old.name}"
    aspects = _aspects(label, old, new)
    destructive = any(a.destructive for a in aspects)
    summary = f"~ {label} " + ", ".join(a.short for a in aspects)
    reasons = [a.long for a in aspects if a.destructive] if destructive else [a.long for a in aspects]
    return Change("alter_field", collection, new.name, destructive, summary, "; ".join(reasons), old, new)


def _aspects(label: str, old: Field, new: Field) -> list[_Aspect]:
    out: list[_Aspect] = []
    if old.type != new.type:
        arrow = f"{old.type} -> {new.type}"
        if type_change_is_safe(old.type, new.type):
            out.append(_Aspect(arrow, f"{label} widens {arrow}", False))
        else:
            out.append(
                _Aspect(arrow, f"{label} changes type {arrow} (values are converted and checked)", True)
            )
    if old.primary != new.primary:
        what = "becomes the primary key" if new.primary else "is no longer the primary key"
        out.append(_Aspect("primary" if new.primary else "not primary", f"{label} {what}", True))
    if old.nullable != new.nullable:
        if new.nullable:
            out.append(_Aspect("nullable", f"{label} becomes nullable (looser)", False))
        else:
            out.append(_Aspect("NOT NULL", f"{label} becomes NOT NULL (stricter)", True))
    if old.unique != new.unique:
        if new.unique:
            out.append(_Aspect("unique", f"{label} becomes unique (stricter)", True))
        else:
            out.append(_Aspect("not unique", f"{label} is no longer unique (looser)", False))
    out.extend(_reference_aspects(label, old.references, new.references))
    if old.default != new.default:
        before = "none" if old.default is None else repr(old.default.to_yaml())
        after = "none" if new.default is None else repr(new.default.to_yaml())
        out.append(_Aspect(f"default {before} -> {after}", f"{label} default {before} -> {after}", False))
    if old.index != new.index:
        short = "indexed" if new.index else "not indexed"
        out.append(_Aspect(short, f"{label} {'gains' if new.index else 'loses'} its index", False))
    if old.on_update_now != new.on_update_now:
        short = "onUpdate now" if new.on_update_now else "no onUpdate"
        out.append(_Aspect(short, f"{label} {short} (trigger recreated)", False))
    if old.internal != new.internal:
        short = "internal" if new.internal else "not internal"
        out.append(_Aspect(short, f"{label} becomes {short} (no SQL change)", False))
    if old.client_writable != new.client_writable:
        short = "client-writable" if new.client_writable else "server-managed"
        out.append(_Aspect(short, f"{label} becomes {short} (no SQL change)", False))
    if old.validation != new.validation:
        out.append(
            _Aspect("validation", f"{label} validation changes (checked by Alyx, no SQL change)", False)
        )
    return out


def _reference_aspects(label: str, old: Reference | None, new: Reference | None) -> list[_Aspect]:
    if old == new:
        return []
    if new is None:
        return [_Aspect("no reference", f"{label} no longer references {_ref_text(old)} (looser)", False)]
    target = _ref_text(new)
    if old is not None and _ref_text(old) == target:
        short = f"onDelete {new.on_delete}"
        return [_Aspect(short, f"{label} {short} (table rebuilt)", False)]
    return [_Aspect(f"references {target}", f"{label} now references {target} (stricter)", True)]


def precheck(conn: sqlite3.Connection, diff_or_changes: SchemaDiff | Iterable[Change]) -> list[str]:
    """Messages naming the stored rows that the given changes cannot keep; empty means OK.

    Only what SQLite enforces is checked: NOT NULL, UNIQUE, foreign keys and type
    conversions. Validation rules run in Alyx on write.
    """
    if isinstance(diff_or_changes, SchemaDiff):
        return _diff_problems(conn, diff_or_changes)
    out: list[str] = []
    for change in diff_or_changes:
        table = change.collection
        if change.kind in ("add_field", "alter_field") and isinstance(change.new, Field):
            source = change.old if isinstance(change.old, Field) else None
            out.extend(field_problems(conn, table, f"{table}.{change.new.name}", source, change.new))
        elif change.kind == "add_index" and isinstance(change.new, Index):
            exprs = [quote(f) for f in change.new.fields]
            out.extend(index_problems(conn, table, table, change.new, exprs))
    return out


def _diff_problems(conn: sqlite3.Connection, diff: SchemaDiff) -> list[str]:
    out: list[str] = []
    for new in diff.new:
        old = diff.old.get(new.name)
        if old is not None and any(c.kind != "change_rules" for c in diff.for_collection(new.name)):
            out.extend(collection_problems(conn, old, new, field_sources(old, new)))
    return out
