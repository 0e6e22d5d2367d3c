"""`alyx deploy rollback [VERSION]`: back to an earlier deployed version, as a new version.

The target's bundle is read from data/deployments/ (nothing comes from the client). The
database side is one transaction: the down steps of every migration history row applied
after the target version (newest first, `migrations.rollback_atomically`), the target's
new history row (`rollback_of` = the target) and the replaced versions marked
`rolled_back`. Then the files and the running server are swapped as for a deploy.

Refused with 409 IRREVERSIBLE, naming the step, before anything changes: a row without a
down side (an `sql` step without `down`), and a row whose own change lost data (a dropped
field or collection: undoing it brings the column back, not its values). A database
backup restored with `alyx db restore` is the way back then; `restore_backup` is not
offered, since deploys take no backup of their own yet.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Mapping
from typing import Any

from alyx_server.deploy.plan import BundleLike
from alyx_server.deploy.store import (
    DeployInProgress,
    DeploymentRow,
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

__all__ = ["IrreversibleRollback", "choose_target", "rollback_commit"]


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


def _check_reversible(conn: sqlite3.Connection, target: DeploymentRow) -> list[str]:
    history = read_history(conn)
    undone = [row for row in reversed(history) if row.id > target.history_head]
    for row in undone:
        for item in row.down:
            if isinstance(item, Irreversible):
                raise IrreversibleRollback(
                    f"cannot go back to version {target.version}: {row.label} cannot be undone "
                    f"({item.where}); restore a database backup instead (alyx db restore)"
                )
        position = history.index(row)
        previous = history[position - 1].snapshot if position else Schema()
        lost = diff_schemas(previous, row.snapshot).destructive
        if lost:
            raise IrreversibleRollback(
                f"cannot go back to version {target.version}: {row.label} did {lost[0].summary}, "
                "whose data a rollback cannot bring back; restore a database backup taken before "
                "it instead (alyx db restore)"
            )
    return [row.label for row in undone]


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
            functions={
                p.removeprefix("functions/"): hashlib.sha256(d).hexdigest()
                for p, d in bundle.files.items()
                if p.startswith("functions/")
            },
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
