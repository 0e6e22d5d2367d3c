"""`alyx migrate status|apply`: pending files first, then the safe rest of schema.yaml.

The plan is computed without writing: each pending file (a version above the last applied
one) transforms the previous snapshot by its operations; what is left between the last of
those snapshots and schema.yaml must be safe and is applied automatically as one more
history row holding schema.yaml's snapshot. A destructive remainder blocks everything,
with a message naming the migration file to write.

Each file, then the automatic step, runs in its own `write_transaction`: foreign keys off,
`BEGIN IMMEDIATE`, operations, history row, `PRAGMA foreign_key_check`, `COMMIT`. Any
failure rolls back, leaving the database exactly as it was before that step. Every
function takes a plain `sqlite3.Connection` in autocommit mode, so the CLI, tests and the
server's live writer thread (`Database.run_exclusive`) all run the same code.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from alyx_server.errors import MigrationError
from alyx_server.migrations.execute import run_operation, transition_to
from alyx_server.migrations.files import MigrationFile, load_migrations
from alyx_server.migrations.history import (
    HistoryRow,
    Irreversible,
    edited_message,
    expect_head,
    find_edited,
    latest_snapshot,
    read_history,
    record,
)
from alyx_server.migrations.operations import OperationRefused, inverse, transform
from alyx_server.migrations.syntax import to_yaml
from alyx_server.migrations.system import apply_system_migrations
from alyx_server.migrations.transactions import write_transaction
from alyx_server.schema.diff import Change, SchemaDiff, diff_schemas
from alyx_server.schema.model import Schema

__all__ = [
    "ApplyResult",
    "MigrationPlan",
    "PlannedFile",
    "StatusRow",
    "apply_migrations",
    "apply_migrations_atomically",
    "blocked_message",
    "migration_status",
    "next_version",
    "plan_migrations",
    "suggested_name",
]

AUTO_NAME = "auto"


@dataclass(frozen=True, slots=True)
class PlannedFile:
    """A pending migration file and the snapshots before and after it."""

    migration: MigrationFile
    before: Schema
    after: Schema


@dataclass(frozen=True, slots=True)
class MigrationPlan:
    history: tuple[HistoryRow, ...]
    files: tuple[PlannedFile, ...]
    auto: SchemaDiff  # the rest of schema.yaml after the files (destructive when blocked)
    blocked: str | None
    edited: tuple[str, ...]
    target: Schema
    next_version: int
    available: tuple[MigrationFile, ...]  # every file of the migrations folder
    # A fresh database (no history) is built from schema.yaml directly; the files that
    # already exist are recorded as applied without running (see `plan_migrations`).
    baseline: tuple[MigrationFile, ...] = ()

    @property
    def up_to_date(self) -> bool:
        return not self.files and not self.auto and not self.edited


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """What an apply did, for the console: system steps, files, automatic changes."""

    system: tuple[str, ...]
    files: tuple[str, ...]
    auto: tuple[str, ...]

    @property
    def changed(self) -> bool:
        return bool(self.system or self.files or self.auto)


StatusState = Literal["applied", "edited", "missing", "pending", "auto", "blocked"]


@dataclass(frozen=True, slots=True)
class StatusRow:
    """One line of `alyx migrate status`."""

    state: StatusState
    name: str
    version: int | None = None
    applied_at: str | None = None
    detail: str = ""


def next_version(history: Sequence[HistoryRow], files: Sequence[MigrationFile]) -> int:
    versions = [r.version for r in history if r.version is not None]
    versions += [f.version for f in files]
    return max(versions, default=0) + 1


def suggested_name(changes: Sequence[Change]) -> str:
    """A migration name for the first destructive change: `drop_slug`, `drop_posts`..."""
    first = changes[0]
    if first.kind == "drop_collection":
        return f"drop_{first.collection}"
    if first.kind == "drop_field":
        return f"drop_{first.name}"
    if first.kind == "add_index":
        return f"add_{first.name}"
    if first.kind == "add_field":
        return f"add_{first.name}"
    return f"alter_{first.collection}_{first.name}"


def blocked_message(changes: Sequence[Change], version: int, directory: str) -> str:
    """SPEC §5: list the destructive changes and name the migration file to write."""
    listed = "; ".join(f"{c.summary} ({c.reason})" for c in changes)
    name = suggested_name(changes)
    return (
        f"schema.yaml has destructive changes: {listed}. "
        f"Write a migration: alyx migrate create {name} "
        f"(creates {directory}/{version:03d}_{name}.yaml)"
    )


def _pending(history: Sequence[HistoryRow], files: Sequence[MigrationFile]) -> list[MigrationFile]:
    applied = {r.version for r in history if r.version is not None}
    last = max(applied, default=0)
    pending = [f for f in files if f.version not in applied]
    for f in pending:
        if f.version < last:
            raise MigrationError(
                f"{f.label} has version {f.version}, but version {last} is already applied: "
                f"renumber it above {last:03d}"
            )
    return pending


def _planned(before: Schema, migration: MigrationFile) -> PlannedFile:
    snapshot = before
    for step in migration.steps:
        try:
            snapshot = transform(snapshot, step.operation)
        except OperationRefused as e:
            raise MigrationError(f"{step.where}: {e}") from e
    return PlannedFile(migration, before, snapshot)


def plan_migrations(conn: sqlite3.Connection, schema: Schema, migrations_dir: Path) -> MigrationPlan:
    """What `apply` would do: pending files, the automatic rest, and what blocks it."""
    history = read_history(conn)
    files = load_migrations(migrations_dir)
    if not history:
        # A fresh database never had the older schemas the files start from: their
        # operations describe how an existing database reached schema.yaml. Build
        # schema.yaml itself and record the files as applied (a baseline).
        rest = diff_schemas(Schema(), schema)
        version = next_version(history, files)
        return MigrationPlan((), (), rest, None, (), schema, version, tuple(files), tuple(files))
    edited = tuple(edited_message(row, f) for row, f in find_edited(history, files))
    planned: list[PlannedFile] = []
    snapshot = latest_snapshot(history)
    for migration in _pending(history, files):
        planned.append(_planned(snapshot, migration))
        snapshot = planned[-1].after
    rest = diff_schemas(snapshot, schema)
    version = next_version(history, files)
    blocked = None
    if rest.destructive:
        blocked = blocked_message(rest.destructive, version, migrations_dir.name)
    return MigrationPlan(tuple(history), tuple(planned), rest, blocked, edited, schema, version, tuple(files))


def _down_side(planned: PlannedFile) -> list[dict[str, Any] | Irreversible]:
    """The undo of every step, last step first, computed from the snapshots."""
    undo: list[list[dict[str, Any] | Irreversible]] = []
    snapshot = planned.before
    for step in planned.migration.steps:
        inverse_ops = inverse(snapshot, step.operation)
        if inverse_ops is None:
            undo.append([Irreversible(f"{step.where} has no down")])
        else:
            undo.append([to_yaml(op) for op in inverse_ops])
        snapshot = transform(snapshot, step.operation)
    return [item for items in reversed(undo) for item in items]


def _apply_file(conn: sqlite3.Connection, planned: PlannedFile, expected_head: int) -> int:
    with write_transaction(conn):
        expect_head(conn, expected_head)
        return _run_file(conn, planned)


def _run_file(conn: sqlite3.Connection, planned: PlannedFile) -> int:
    """A file's steps and its history row, inside the caller's transaction."""
    migration = planned.migration
    snapshot = planned.before
    for step in migration.steps:
        try:
            snapshot = run_operation(conn, snapshot, step.operation)
        except (MigrationError, OperationRefused, sqlite3.Error) as e:
            raise MigrationError(f"{step.where}: {e}; nothing was changed") from e
    return record(
        conn,
        kind="file",
        name=migration.name,
        version=migration.version,
        checksum=migration.checksum,
        snapshot=snapshot,
        down=_down_side(planned),
    )


def _apply_auto(
    conn: sqlite3.Connection,
    diff: SchemaDiff,
    expected_head: int,
    baseline: Sequence[MigrationFile] = (),
) -> None:
    with write_transaction(conn):
        expect_head(conn, expected_head)
        _run_auto(conn, diff, baseline)


def _run_auto(conn: sqlite3.Connection, diff: SchemaDiff, baseline: Sequence[MigrationFile]) -> None:
    """The safe rest of schema.yaml and its history rows, inside the caller's transaction."""
    try:
        transition_to(conn, diff.old, diff.new)
    except (MigrationError, sqlite3.Error) as e:
        raise MigrationError(f"applying schema.yaml failed: {e}; nothing was changed") from e
    record(conn, kind="auto", name=AUTO_NAME, checksum=diff.new.checksum(), snapshot=diff.new)
    for migration in baseline:
        record(
            conn,
            kind="file",
            name=migration.name,
            version=migration.version,
            checksum=migration.checksum,
            snapshot=diff.new,
            down=[Irreversible("it was recorded as the baseline of a fresh database")],
        )


def apply_migrations_atomically(
    conn: sqlite3.Connection,
    schema: Schema,
    migrations_dir: Path,
    *,
    before_commit: Callable[[sqlite3.Connection], None],
) -> ApplyResult:
    """`apply_migrations` in ONE transaction, which `before_commit(conn)` joins last.

    For `alyx deploy`: every pending file, the safe rest and the caller's own rows commit
    together or not at all; any failure (a pre-check, a step half-way, `before_commit`)
    rolls everything back and the database is left as it was. The system migrations,
    which the server ran at start, are not part of it.
    """
    plan = _runnable_plan(conn, schema, migrations_dir)
    head = plan.history[-1].id if plan.history else 0
    with write_transaction(conn):
        expect_head(conn, head)
        for planned in plan.files:
            _run_file(conn, planned)
        if plan.auto or plan.baseline:
            _run_auto(conn, plan.auto, plan.baseline)
        before_commit(conn)
    return _applied(plan, ())


def _runnable_plan(conn: sqlite3.Connection, schema: Schema, migrations_dir: Path) -> MigrationPlan:
    """The migration plan, refused (MigrationError) when an applied file was edited or a
    destructive change has no pending file."""
    plan = plan_migrations(conn, schema, migrations_dir)
    if plan.edited:
        raise MigrationError("\n".join(plan.edited))
    if plan.blocked:
        raise MigrationError(plan.blocked)
    return plan


def apply_migrations(conn: sqlite3.Connection, schema: Schema, migrations_dir: Path) -> ApplyResult:
    """Bring the database to `schema`: system migrations, pending files, then the safe rest.

    Refuses, before changing anything of the user's, when an applied file was edited or
    schema.yaml has destructive changes no pending file covers.
    """
    system = apply_system_migrations(conn)
    plan = _runnable_plan(conn, schema, migrations_dir)
    head = plan.history[-1].id if plan.history else 0
    for planned in plan.files:
        head = _apply_file(conn, planned, head)
    if plan.auto or plan.baseline:
        _apply_auto(conn, plan.auto, head, plan.baseline)
    return _applied(plan, tuple(system))


def _applied(plan: MigrationPlan, system: tuple[str, ...]) -> ApplyResult:
    """What applying `plan` did, after `system` (the system migrations that ran)."""
    auto: tuple[str, ...] = ()
    if plan.auto or plan.baseline:
        auto = tuple(c.summary for c in plan.auto.changes)
    files = tuple(p.migration.stem for p in plan.files) + tuple(f"{m.stem} (baseline)" for m in plan.baseline)
    return ApplyResult(system, files, auto)


def _history_rows(plan: MigrationPlan, files: dict[int, MigrationFile]) -> list[StatusRow]:
    edited = {row.id for row, _ in find_edited(plan.history, list(files.values()))}
    out = []
    for row in plan.history:
        state: StatusState = "applied"
        detail = "automatic: safe schema.yaml changes" if row.kind == "auto" else ""
        if row.id in edited:
            state, detail = "edited", "changed since it was applied: restore it"
        elif row.kind == "file" and row.version not in files:
            state, detail = "missing", "applied; its file is no longer in the migrations folder"
        out.append(StatusRow(state, row.label, row.version, row.applied_at, detail))
    return out


def migration_status(conn: sqlite3.Connection, schema: Schema, migrations_dir: Path) -> list[StatusRow]:
    """Applied rows (edited or missing files marked), pending files, automatic changes to
    come, and the destructive changes that block them."""
    plan = plan_migrations(conn, schema, migrations_dir)
    out = _history_rows(plan, {f.version: f for f in plan.available})
    for planned in plan.files:
        m = planned.migration
        out.append(StatusRow("pending", m.stem, m.version, None, m.description))
    for m in plan.baseline:
        detail = "baseline: a fresh database is built from schema.yaml; recorded as applied"
        out.append(StatusRow("pending", m.stem, m.version, None, detail))
    for change in plan.auto.changes:
        state: StatusState = "blocked" if change.destructive else "auto"
        out.append(StatusRow(state, change.summary, None, None, change.reason))
    return out
