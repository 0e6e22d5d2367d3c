"""`alyx deploy rollback [VERSION]`: back to an earlier deployed version, as a new version.

The target's bundle is read from data/deployments/ (nothing comes from the client). The
database side is one transaction: the down steps of every migration history row applied
after the target version (newest first, `migrations.rollback_atomically`), the target's
new history row (`rollback_of` = the target) and the replaced versions marked
`rolled_back`. Then the files and the running server are swapped as for a deploy.

Refused with 409 IRREVERSIBLE, naming the step, before anything changes: a row without a
down side (an `sql` step without `down`), and a row whose own change lost data (a dropped
field or collection: undoing it brings the column back, not its values).

`restore_commit` is the way back then (`restore_backup`): the version that replaced the
target took a database copy just before it ran, when its plan had destructive steps
(deploy/execute.py). That copy is copied once more, the full deploy history of the live
database (and its AUTOINCREMENT counters, so change-feed ids are never reused) is
written into it with the rollback's `swapping` row, and the result goes into the live
database through SQLite's backup API on the writer connection: one write transaction,
so connections stay open and readers see the old or the new database, never a mix.
Everything written since that deploy (documents, users, sessions) is lost: that is what
restoring a backup means, and the plan said a copy would be taken.

`plan_rollback` answers what a rollback would do without doing it (the admin UI shows it
before its confirmation): the versions, the history rows the down steps undo, why only
`restore_backup` can go back (when that is so), and the database copy it would restore.
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alyx_server.deploy.plan import BundleLike, bundled_functions
from alyx_server.deploy.store import (
    DeployInProgress,
    DeploymentRow,
    backup_path,
    current_row,
    insert_row,
    next_version,
    row_by_version,
    set_status,
    swapping_row,
)
from alyx_server.errors import AlyxError, NotFound, ValidationError
from alyx_server.migrations.history import Irreversible, head_id, read_history
from alyx_server.migrations.rollback import rollback_atomically
from alyx_server.schema.diff import diff_schemas
from alyx_server.schema.model import Schema
from alyx_server.schema.system_tables import DEPLOYMENTS_TABLE
from alyx_server.tools.timestamps import SYSTEM_CLOCK, Clock

__all__ = [
    "IrreversibleRollback",
    "RollbackPlan",
    "choose_target",
    "plan_rollback",
    "restore_commit",
    "rollback_commit",
]


class IrreversibleRollback(AlyxError):
    """409: a step between the target and now cannot be undone without losing data."""

    status = 409
    code = "IRREVERSIBLE"


def choose_target(conn: sqlite3.Connection, version: int | None) -> tuple[DeploymentRow, DeploymentRow]:
    """(the version in force, the version to go back to: `version`, or the one before)."""
    current = current_row(conn)
    if current is None:
        raise NotFound(
            "nothing was deployed to this server yet: there is no version to go back to", code="NOT_FOUND"
        )
    if version is None:
        row = conn.execute(
            f"SELECT version FROM {DEPLOYMENTS_TABLE} WHERE bundle_sha256 IS NOT NULL AND status = 'applied' "
            "AND version < ? ORDER BY version DESC LIMIT 1",
            (current.version,),
        ).fetchone()
        if row is None:
            raise NotFound(
                f"version {current.version} is the first deployed: there is no earlier one", code="NOT_FOUND"
            )
        version = int(row[0])
    target = row_by_version(conn, version)
    if target is None:
        raise NotFound(f"no deployed version {version} (alyx deploy history lists them)", code="NOT_FOUND")
    if target.version >= current.version:
        message = f"version {version} is not older than the version in force ({current.version})"
        raise ValidationError(message, code="VALIDATION_ERROR")
    return current, target


def _renamed_back(down: Sequence[Mapping[str, Any] | Irreversible]) -> set[tuple[str, str | None]]:
    """What the down steps rename back into place: a renamed field or collection is not lost,
    though the snapshots compare as a drop of its old name and an add of the new one."""
    restored: set[tuple[str, str | None]] = set()
    for step in down:
        if isinstance(step, Irreversible):
            continue
        field = step.get("rename_field")
        if isinstance(field, Mapping):
            restored.add((str(field.get("collection")), str(field.get("to"))))
        collection = step.get("rename_collection")
        if isinstance(collection, Mapping):
            restored.add((str(collection.get("to")), None))
    return restored


def _check_reversible(conn: sqlite3.Connection, target: DeploymentRow) -> list[str]:
    history = read_history(conn)
    undone = [row for row in reversed(history) if row.id > target.history_head]
    for row in undone:
        for item in row.down:
            if isinstance(item, Irreversible):
                raise IrreversibleRollback(
                    f"cannot go back to version {target.version}: {row.label} cannot be undone "
                    f"({item.where}); restore the database copy taken before it instead "
                    "(alyx deploy rollback --restore-backup, or alyx db restore)"
                )
        position = history.index(row)
        previous = history[position - 1].snapshot if position else Schema()
        restored = _renamed_back(row.down)
        lost = [
            change
            for change in diff_schemas(previous, row.snapshot).destructive
            if (change.collection, change.name) not in restored
        ]
        if lost:
            raise IrreversibleRollback(
                f"cannot go back to version {target.version}: {row.label} did {lost[0].summary}, "
                "whose data a rollback cannot bring back; restore the database copy taken before "
                "it instead (alyx deploy rollback --restore-backup, or alyx db restore)"
            )
    return [row.label for row in undone]


@dataclass(frozen=True, slots=True)
class RollbackPlan:
    """What a rollback would do (`plan_rollback`); nothing is changed to compute it."""

    current: DeploymentRow
    target: DeploymentRow
    migrations_undone: list[str]
    refused: str | None
    """Why the down steps cannot go back (IRREVERSIBLE); only `restore_backup` can then."""
    backup: str | None
    """The database copy `restore_backup` would restore (None when there is none)."""


def _replaced_by(conn: sqlite3.Connection, target: DeploymentRow) -> int | None:
    """The version that replaced `target`: the one whose copy `restore_backup` restores."""
    row = conn.execute(
        f"SELECT MIN(version) FROM {DEPLOYMENTS_TABLE} WHERE version > ? AND status = 'applied' "
        "AND bundle_sha256 IS NOT NULL",
        (target.version,),
    ).fetchone()
    return None if row is None or row[0] is None else int(row[0])


def plan_rollback(conn: sqlite3.Connection, version: int | None, folder: Path) -> RollbackPlan:
    """What `rollback_commit` (or, with a copy, `restore_commit`) would do now: the same
    target and checks, run without writing. `folder` is data/deployments/."""
    current, target = choose_target(conn, version)
    undone = [row.label for row in reversed(read_history(conn)) if row.id > target.history_head]
    refused: str | None = None
    try:
        _check_reversible(conn, target)
    except IrreversibleRollback as e:
        refused = e.message
    replaced = _replaced_by(conn, target)
    backup = None if replaced is None else backup_path(folder, replaced)
    found = backup.name if backup is not None and backup.is_file() else None
    return RollbackPlan(current, target, undone, refused, found)


def rollback_commit(
    conn: sqlite3.Connection,
    target: DeploymentRow,
    expected_current: int,
    bundle: BundleLike,
    *,
    details: Mapping[str, Any],
    clock: Clock = SYSTEM_CLOCK,
) -> tuple[int, list[str]]:
    """The database side of a rollback; returns (the new version, the history rows undone)."""
    if swapping_row(conn) is not None:
        raise DeployInProgress("a deploy is being put in place on this server; try again once it is done")
    current = current_row(conn)
    if current is None or current.version != expected_current:
        raise DeployInProgress("another deploy ran meanwhile; check alyx deploy status and try again")
    labels = _check_reversible(conn, target)
    version = next_version(conn)
    now = clock.now()

    def record(c: sqlite3.Connection) -> None:
        insert_row(
            c,
            version=version,
            bundle_sha256=target.bundle_sha256,
            schema_text=bundle.files["schema.yaml"].decode("utf-8", errors="replace"),
            functions=bundled_functions(bundle),
            config=dict(bundle.config),
            summary={"rollback_of": target.version, "migrations_undone": labels},
            token_name=details.get("token_name"),
            message=str(details.get("message") or f"rollback to version {target.version}"),
            git_commit=target.git_commit,
            git_dirty=target.git_dirty,
            history_head=head_id(c),
            rollback_of=target.version,
        )
        replaced = c.execute(
            f"SELECT version FROM {DEPLOYMENTS_TABLE} "
            "WHERE version > ? AND version < ? AND status = 'applied'",
            (target.version, version),
        ).fetchall()
        for (v,) in replaced:
            set_status(c, int(v), "rolled_back", now=now)

    rollback_atomically(conn, target.history_head, before_commit=record)
    return version, labels


def restore_commit(
    conn: sqlite3.Connection,
    target: DeploymentRow,
    expected_current: int,
    bundle: BundleLike,
    folder: Path,
    *,
    details: Mapping[str, Any],
    clock: Clock = SYSTEM_CLOCK,
) -> tuple[int, str]:
    """Restore the database copy taken before the version that replaced `target`, as a new
    version; returns (the new version, the copy's file name). `conn` is the writer's."""
    if swapping_row(conn) is not None:
        raise DeployInProgress("a deploy is being put in place on this server; try again once it is done")
    current = current_row(conn)
    if current is None or current.version != expected_current:
        raise DeployInProgress("another deploy ran meanwhile; check alyx deploy status and try again")
    replaced = _replaced_by(conn, target)
    assert replaced is not None  # choose_target: the version in force is newer than the target
    backup = backup_path(folder, replaced)
    if not backup.is_file():
        raise IrreversibleRollback(
            f"cannot restore the database as it was at version {target.version}: version {replaced} "
            "took no database copy (deploys take one only when their plan has destructive steps) "
            "or it was pruned; restore a backup of your own with alyx db restore"
        )
    version = next_version(conn)
    copy = folder / f".restore-v{version}.db"
    shutil.copyfile(backup, copy)
    try:
        _prepare_copy(copy, conn, target, bundle, version, replaced, details, clock)
        source = sqlite3.connect(copy)
        try:
            source.backup(conn)  # one step: one write transaction on the live database
        finally:
            source.close()
    finally:
        copy.unlink(missing_ok=True)
    return version, backup.name


def _prepare_copy(
    copy: Path,
    live: sqlite3.Connection,
    target: DeploymentRow,
    bundle: BundleLike,
    version: int,
    replaced: int,
    details: Mapping[str, Any],
    clock: Clock,
) -> None:
    """The copy as the live database must be once restored: the live deploy history,
    counters no lower than the live ones, and the rollback's `swapping` row."""
    names = [str(r[1]) for r in live.execute(f"PRAGMA table_info({DEPLOYMENTS_TABLE})")]
    rows = live.execute(f"SELECT {', '.join(names)} FROM {DEPLOYMENTS_TABLE}").fetchall()
    sequences = live.execute("SELECT name, seq FROM sqlite_sequence").fetchall()
    conn = sqlite3.connect(copy, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(f"DELETE FROM {DEPLOYMENTS_TABLE}")
        marks = ", ".join("?" for _ in names)
        conn.executemany(f"INSERT INTO {DEPLOYMENTS_TABLE} ({', '.join(names)}) VALUES ({marks})", rows)
        for name, seq in sequences:
            conn.execute("UPDATE sqlite_sequence SET seq = MAX(seq, ?) WHERE name = ?", (seq, name))
        now = clock.now()
        for (v,) in conn.execute(
            f"SELECT version FROM {DEPLOYMENTS_TABLE} WHERE version > ? AND status = 'applied'",
            (target.version,),
        ).fetchall():
            set_status(conn, int(v), "rolled_back", now=now)
        insert_row(
            conn,
            version=version,
            bundle_sha256=target.bundle_sha256,
            schema_text=bundle.files["schema.yaml"].decode("utf-8", errors="replace"),
            functions=bundled_functions(bundle),
            config=dict(bundle.config),
            summary={"rollback_of": target.version, "restored_backup": f"backup-v{replaced}.db"},
            token_name=details.get("token_name"),
            message=str(details.get("message") or f"rollback to version {target.version}, database restored"),
            git_commit=target.git_commit,
            git_dirty=target.git_dirty,
            history_head=head_id(conn),
            rollback_of=target.version,
        )
        conn.execute("COMMIT")
        conn.execute("PRAGMA journal_mode = DELETE")
    finally:
        conn.close()
