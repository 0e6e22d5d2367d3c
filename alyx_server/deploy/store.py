"""Where deployments are kept: the bundles on disk, the history rows and the deploy lease.

    data/deployments/<sha256>.tar.gz   every uploaded bundle, written atomically; the
                                       newest `deploy.keep_bundles` are kept, plus those
                                       a history row still needs for a rollback
    data/deployments/backup-v<N>.db    the database just before version N, when its plan
                                       had destructive steps; the newest
                                       `deploy.keep_bundles` are kept
    _alyx_deployments                  one row per applied version (and per rollback)
    data/deployments/plans/<id>.json   prepared plans (bundle, live fingerprint, version,
                                       message, time), so that any server process can
                                       execute a plan another one prepared; the newest
                                       MAX_PLANS younger than PLAN_TTL are kept. Beside
                                       the bundles, not in the database: preparing (a
                                       dry run) leaves the database file as it was

A history row is written in the same transaction as the deploy's migrations, so it exists
exactly when the deploy's database changes do, and a failed deploy leaves the database
file byte-identical (no lease row, no failure row: the error goes to the caller and the
log). Its `status` is `swapping` until the project's files and the running server have
taken the bundle, then `applied`; a row left `swapping` (the server was killed in between)
is finished at the next start-up. Two deploys: the second gets 409 DEPLOY_IN_PROGRESS from
the deploy lease (an flock on data/deployments/.lock, held by any process for the whole
execute or rollback: deploy/execute.py's `deploy_lock`), or from a `swapping` row.
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from alyx_server.errors import AlyxError
from alyx_server.schema.system_tables import DEPLOYMENTS_TABLE
from alyx_server.tools.timestamps import format_timestamp

__all__ = [
    "MAX_PLANS",
    "PLAN_TTL",
    "DeployInProgress",
    "DeploymentRow",
    "PlanRow",
    "backup_path",
    "bundle_path",
    "current_row",
    "delete_plan",
    "insert_row",
    "next_version",
    "plan_bundles",
    "plan_row",
    "prune_bundles",
    "read_bundle_file",
    "read_rows",
    "row_by_version",
    "save_plan",
    "set_status",
    "swapping_row",
    "write_bundle_file",
]

PLAN_TTL = 3600.0
"""Seconds a prepared plan stays executable."""
MAX_PLANS = 16
"""Prepared plans kept; preparing another drops the oldest."""

_COLUMNS = (
    "version, bundle_sha256, token_name, message, git_commit, git_dirty, summary, status, "
    "duration_ms, rollback_of, created_at, applied_at, config, history_head"
)


class DeployInProgress(AlyxError):
    """409: another deploy or rollback is executing."""

    status = 409
    code = "DEPLOY_IN_PROGRESS"


@dataclass(frozen=True, slots=True)
class DeploymentRow:
    """One `_alyx_deployments` row, as the history route shows it."""

    version: int
    bundle_sha256: str
    token_name: str | None
    message: str
    git_commit: str | None
    git_dirty: bool | None
    summary: dict[str, Any]
    status: str
    duration_ms: int | None
    rollback_of: int | None
    created_at: str
    applied_at: str | None
    config: dict[str, object]
    history_head: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "bundle_sha256": self.bundle_sha256,
            "token_name": self.token_name,
            "message": self.message,
            "git_commit": self.git_commit,
            "git_dirty": self.git_dirty,
            "summary": self.summary,
            "outcome": self.status,
            "duration_ms": self.duration_ms,
            "rollback_of": self.rollback_of,
            "created_at": self.created_at,
        }


def _row(r: sqlite3.Row | tuple[Any, ...]) -> DeploymentRow:
    return DeploymentRow(
        version=int(r[0]),
        bundle_sha256=str(r[1] or ""),
        token_name=r[2],
        message=str(r[3] or ""),
        git_commit=r[4],
        git_dirty=None if r[5] is None else bool(r[5]),
        summary=json.loads(r[6] or "{}"),
        status=str(r[7]),
        duration_ms=None if r[8] is None else int(r[8]),
        rollback_of=None if r[9] is None else int(r[9]),
        created_at=str(r[10]),
        applied_at=r[11],
        config=json.loads(r[12] or "{}"),
        history_head=int(r[13] or 0),
    )


# -- bundles on disk ---------------------------------------------------------------------------
def bundle_path(folder: Path, sha256: str) -> Path:
    return folder / f"{sha256}.tar.gz"


def write_bundle_file(folder: Path, sha256: str, data: bytes) -> Path:
    """Store a bundle (already checked) under its hash; a temporary file, fsync, rename."""
    folder.mkdir(parents=True, exist_ok=True)
    target = bundle_path(folder, sha256)
    if target.is_file():
        os.utime(target)  # the newest again, for pruning
        return target
    tmp = folder / f".{sha256}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, target)
    return target


def backup_path(folder: Path, version: int) -> Path:
    """The database copy taken just before `version` was deployed (destructive plans only)."""
    return folder / f"backup-v{version}.db"


def read_bundle_file(folder: Path, sha256: str) -> bytes:
    path = bundle_path(folder, sha256)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise AlyxError(
            f"the bundle {sha256[:12]} is no longer stored in {folder}; raise deploy.keep_bundles "
            "to keep more versions",
            code="BUNDLE_MISSING",
            status=409,
        ) from None


def prune_bundles(folder: Path, keep: int, needed: set[str]) -> list[str]:
    """Delete all but the newest `keep` bundles (by modification time), never one in
    `needed`; returns the hashes deleted."""
    if not folder.is_dir():
        return []
    stored = sorted(folder.glob("*.tar.gz"), key=lambda p: p.stat().st_mtime, reverse=True)
    removed: list[str] = []
    for path in stored[max(keep, 0) :]:
        sha = path.name.removesuffix(".tar.gz")
        if sha in needed:
            continue
        path.unlink(missing_ok=True)
        removed.append(sha)
    backups = sorted(folder.glob("backup-v*.db"), key=_backup_version, reverse=True)
    for path in backups[max(keep, 0) :]:
        path.unlink(missing_ok=True)
    return removed


def _backup_version(path: Path) -> int:
    digits = path.stem.removeprefix("backup-v")
    return int(digits) if digits.isdigit() else 0


# -- history rows ------------------------------------------------------------------------------
def read_rows(conn: sqlite3.Connection, limit: int = 100) -> list[DeploymentRow]:
    """Deployments newest first (rows from before `alyx deploy` existed have no bundle)."""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM {DEPLOYMENTS_TABLE} WHERE bundle_sha256 IS NOT NULL "
        "ORDER BY version DESC LIMIT ?",
        (limit,),
    ).fetchall()
    return [_row(r) for r in rows]


def row_by_version(conn: sqlite3.Connection, version: int) -> DeploymentRow | None:
    r = conn.execute(
        f"SELECT {_COLUMNS} FROM {DEPLOYMENTS_TABLE} WHERE version = ? AND bundle_sha256 IS NOT NULL",
        (version,),
    ).fetchone()
    return None if r is None else _row(r)


def current_row(conn: sqlite3.Connection) -> DeploymentRow | None:
    """The version in force: the newest row that was applied or is being swapped in."""
    r = conn.execute(
        f"SELECT {_COLUMNS} FROM {DEPLOYMENTS_TABLE} WHERE bundle_sha256 IS NOT NULL "
        "AND status IN ('applied', 'swapping') ORDER BY version DESC LIMIT 1"
    ).fetchone()
    return None if r is None else _row(r)


def next_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute(f"SELECT COALESCE(MAX(version), 0) + 1 FROM {DEPLOYMENTS_TABLE}").fetchone()[0])


def insert_row(
    conn: sqlite3.Connection,
    *,
    version: int,
    bundle_sha256: str,
    schema_text: str,
    functions: dict[str, str],
    config: dict[str, object],
    summary: dict[str, Any],
    token_name: str | None,
    message: str,
    git_commit: str | None,
    git_dirty: bool | None,
    history_head: int,
    rollback_of: int | None = None,
) -> None:
    """A `swapping` row, inside the caller's transaction (the deploy's commit point)."""
    conn.execute(
        f"INSERT INTO {DEPLOYMENTS_TABLE} (version, schema, functions, status, bundle_sha256, "
        "token_name, message, git_commit, git_dirty, summary, config, history_head, rollback_of) "
        "VALUES (?, ?, ?, 'swapping', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            version,
            schema_text,
            json.dumps(functions, sort_keys=True),
            bundle_sha256,
            token_name,
            message,
            git_commit,
            None if git_dirty is None else int(git_dirty),
            json.dumps(summary, sort_keys=True),
            json.dumps(config, sort_keys=True),
            history_head,
            rollback_of,
        ),
    )


def set_status(
    conn: sqlite3.Connection, version: int, status: str, *, duration_ms: int | None = None, now: datetime
) -> None:
    """Mark a row `applied` (files swapped) or `rolled_back` (a later rollback undid it)."""
    conn.execute(
        f"UPDATE {DEPLOYMENTS_TABLE} SET status = ?, duration_ms = COALESCE(?, duration_ms), "
        "applied_at = CASE WHEN ? = 'applied' THEN ? ELSE applied_at END, "
        "rolled_back_at = CASE WHEN ? = 'rolled_back' THEN ? ELSE rolled_back_at END WHERE version = ?",
        (status, duration_ms, status, format_timestamp(now), status, format_timestamp(now), version),
    )


def swapping_row(conn: sqlite3.Connection) -> DeploymentRow | None:
    """A deploy committed whose files are not swapped yet: running now, or cut short."""
    r = conn.execute(
        f"SELECT {_COLUMNS} FROM {DEPLOYMENTS_TABLE} WHERE status = 'swapping' ORDER BY version LIMIT 1"
    ).fetchone()
    return None if r is None else _row(r)


# -- prepared plans ----------------------------------------------------------------------------
@dataclass(frozen=True)
class PlanRow:
    """A prepared plan's identity: enough to compute it again from the stored bundle and
    to know whether the live state is still the one it was computed against."""

    plan_id: str
    bundle_sha256: str
    fingerprint: str
    version: int
    message: str
    created: float  # seconds since the epoch


def _plans(folder: Path) -> Path:
    return folder / "plans"


def save_plan(folder: Path, row: PlanRow) -> None:
    """Keep `row`, dropping plans older than PLAN_TTL and all but the newest MAX_PLANS."""
    plans = _plans(folder)
    plans.mkdir(parents=True, exist_ok=True)
    tmp = plans / f".{row.plan_id}.tmp"
    tmp.write_text(json.dumps(row.__dict__), encoding="utf-8")
    os.replace(tmp, plans / f"{row.plan_id}.json")
    kept = sorted(_read_plans(folder), key=lambda r: r.created, reverse=True)
    for old in kept[MAX_PLANS:] + [r for r in kept if row.created - r.created > PLAN_TTL]:
        (plans / f"{old.plan_id}.json").unlink(missing_ok=True)


def _read_plan(path: Path) -> PlanRow | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return PlanRow(**data)
    except (OSError, ValueError, TypeError):
        return None  # gone meanwhile, or not a plan: unknown


def _read_plans(folder: Path) -> list[PlanRow]:
    plans = _plans(folder)
    if not plans.is_dir():
        return []
    return [r for p in plans.glob("*.json") if (r := _read_plan(p)) is not None]


def plan_row(folder: Path, plan_id: str, now: float) -> PlanRow | None:
    """The plan `plan_id`, or None when unknown or older than PLAN_TTL at `now`."""
    if not plan_id.isalnum():
        return None
    row = _read_plan(_plans(folder) / f"{plan_id}.json")
    if row is None or now - row.created > PLAN_TTL:
        return None
    return row


def delete_plan(folder: Path, plan_id: str) -> None:
    if plan_id.isalnum():
        (_plans(folder) / f"{plan_id}.json").unlink(missing_ok=True)


def plan_bundles(folder: Path) -> set[str]:
    """The bundles prepared plans still need (never pruned)."""
    return {r.bundle_sha256 for r in _read_plans(folder)}
