"""Execute a planned deploy: the database commit point, then the project's files.

    stage(contents, folder)           the bundle's files under data/deployments/staging/<sha>.*/
    commit(conn, ...)                 STALE_PLAN and DEPLOY_IN_PROGRESS checks, then every
                                      pending migration, the safe rest of schema.yaml and
                                      the `swapping` history row in ONE transaction
    swap_files(staged, settings)      schema.yaml, migrations/ and functions/ replaced from
                                      the staging folder (temporary names, then renames),
                                      the deployed alyx.yaml keys written to deployed.json
    recover_interrupted(settings)     at start-up, before schema.yaml is read: a row still
                                      `swapping` (the server died after the commit) has its
                                      bundle's files put in place, and is marked applied
    deploy_lock(folder)               the lease one execute or rollback holds: an exclusive
                                      flock on data/deployments/.lock, so a second deploy,
                                      from this process or another one on the same data
                                      folder, gets 409 DEPLOY_IN_PROGRESS; the kernel drops
                                      it when its process dies (kill -9 included), and
                                      taking it writes nothing to the database

A plan with destructive steps (a dropped field or collection) makes `commit` take a
database copy first, through SQLite's backup API on the writer connection (nothing else
writes meanwhile): `data/deployments/backup-v<version>.db`, the database as it was just
before that version. `alyx deploy rollback --restore-backup` restores it
(deploy/rollback.py). A deploy that fails before its commit deletes its copy.

The order makes a crash safe: before the commit nothing of the old version changed (the
staging folder is ignored); after it, the row names the bundle that must be in place,
and start-up finishes the swap from the stored bundle. Old or new, never a mix.

Deployed keys live in `data/deployments/deployed.json` (dotted key -> value as written);
`deployed_settings` lays them over the settings read from alyx.yaml and the environment,
so they survive a restart (a deployed key wins over the server's alyx.yaml).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import sqlite3
import uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from alyx_server.config import Settings
from alyx_server.config.loader import load_settings
from alyx_server.config.settings import build_settings
from alyx_server.deploy.bundle import MAX_BUNDLE_SIZE_DEFAULT, read_bundle
from alyx_server.deploy.plan import (
    BundleLike,
    DeployPlan,
    bundled_functions,
    live_fingerprint,
    server_values,
)
from alyx_server.deploy.store import (
    DeployInProgress,
    DeploymentRow,
    backup_path,
    insert_row,
    read_bundle_file,
    set_status,
    swapping_row,
)
from alyx_server.deploy.swap import replace_file, sync_tree
from alyx_server.errors import AlyxError
from alyx_server.migrations.history import head_id
from alyx_server.migrations.runner import ApplyResult, apply_migrations_atomically
from alyx_server.migrations.transactions import write_transaction
from alyx_server.schema.system_tables import DEPLOYMENTS_TABLE
from alyx_server.tools.timestamps import SYSTEM_CLOCK, Clock

__all__ = [
    "DEPLOYED_CONFIG",
    "StalePlan",
    "commit",
    "deploy_lock",
    "deployed_settings",
    "deployments_folder",
    "lease_taken",
    "mark_applied",
    "recover_interrupted",
    "stage",
    "swap_files",
]

log = logging.getLogger("alyx.deploy")

DEPLOYED_CONFIG = "deployed.json"


class StalePlan(AlyxError):
    """409: the server changed since the plan was computed."""

    status = 409
    code = "STALE_PLAN"


def deployments_folder(settings: Settings) -> Path:
    """`data/deployments/` beside the database file."""
    return settings.database.path.parent / "deployments"


# -- the deploy lease --------------------------------------------------------------------------
LOCK_FILE = ".lock"


@contextlib.contextmanager
def deploy_lock(folder: Path) -> Iterator[None]:
    """Hold the deploy lease of `folder` (data/deployments/) for the `with` block, or raise
    DeployInProgress at once when another execute or rollback holds it (any process)."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DeployInProgress(
                "another deploy or rollback is executing on this server; wait for it to finish "
                "(alyx deploy status shows it), then run this one again"
            ) from None
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def lease_taken(folder: Path) -> bool:
    """Whether some execute or rollback holds the deploy lease of `folder` now."""
    try:
        fd = os.open(folder / LOCK_FILE, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _backup_live(conn: sqlite3.Connection, target: Path) -> None:
    """A consistent copy of the database `conn` is open on, written beside `target` and
    renamed into place (the same copy `alyx db backup` makes, from the writer itself)."""
    partial = target.with_name(f".{target.name}.partial")
    partial.unlink(missing_ok=True)
    dst = sqlite3.connect(partial)
    try:
        conn.backup(dst)
        dst.execute("PRAGMA journal_mode = DELETE")
    except BaseException:
        dst.close()
        partial.unlink(missing_ok=True)
        raise
    dst.close()
    os.replace(partial, target)


# -- staging -----------------------------------------------------------------------------------
def stage(contents: BundleLike, folder: Path) -> Path:
    """Write the bundle's files under a folder of their own, `folder/staging/<sha>.<pid>.<n>/`:
    with several worker processes, two of them may stage one bundle at once (a prepare and
    an execute), and neither may remove what the other reads. The caller removes it."""
    staged = folder / "staging" / f"{contents.sha256}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
    for rel, data in contents.files.items():
        target = staged / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    (staged / "migrations").mkdir(parents=True, exist_ok=True)
    (staged / "functions").mkdir(parents=True, exist_ok=True)
    return staged


# -- the commit point --------------------------------------------------------------------------
def commit(
    conn: sqlite3.Connection,
    plan: DeployPlan,
    bundle: BundleLike,
    staged: Path,
    settings: Settings,
    *,
    details: Mapping[str, Any],
    clock: Clock = SYSTEM_CLOCK,
    files: Mapping[str, object] | None = None,
) -> ApplyResult:
    """Check the plan is current, then migrations + the history row in one transaction.

    `details`: token_name, message, git_commit, git_dirty, rollback_of (None when absent).
    `files`: `live_files(settings)`, read before the write lock was taken (deploys take
    turns under the deploy lease, and only a deploy puts files in place), or None.
    A destructive plan first copies the database to `backup_path(folder, version)`.
    Any failure raises before COMMIT: the database is left byte-identical (and the copy
    is deleted).
    """
    if swapping_row(conn) is not None:
        raise DeployInProgress(
            "another deploy is being put in place on this server; wait for it to finish "
            "(alyx deploy status shows it), then run this one again"
        )
    if live_fingerprint(conn, settings, files) != plan.fingerprint:
        raise StalePlan(
            "the server's schema, migrations, functions or configuration changed since this "
            "plan was made; run alyx deploy again to see the new plan"
        )
    bundled = bundled_functions(bundle)

    backup = backup_path(deployments_folder(settings), plan.version) if plan.destructive else None
    summary = plan.summary()
    if backup is not None:
        _backup_live(conn, backup)
        summary["backup"] = backup.name

    def record(c: sqlite3.Connection) -> None:
        version = int(
            c.execute(f"SELECT COALESCE(MAX(version), 0) + 1 FROM {DEPLOYMENTS_TABLE}").fetchone()[0]
        )
        if version != plan.version:
            raise StalePlan(f"version {plan.version} was deployed meanwhile; run alyx deploy again")
        insert_row(
            c,
            version=plan.version,
            bundle_sha256=plan.bundle_sha256,
            schema_text=bundle.files["schema.yaml"].decode("utf-8", errors="replace"),
            functions=bundled,
            config=dict(bundle.config),
            summary=summary,
            token_name=details.get("token_name"),
            message=str(details.get("message") or ""),
            git_commit=details.get("git_commit"),
            git_dirty=details.get("git_dirty"),
            history_head=head_id(c),
            rollback_of=details.get("rollback_of"),
        )

    try:
        return apply_migrations_atomically(conn, plan.schema, staged / "migrations", before_commit=record)
    except BaseException:
        if backup is not None:
            backup.unlink(missing_ok=True)
        raise


def mark_applied(
    conn: sqlite3.Connection, version: int, duration_ms: int, clock: Clock = SYSTEM_CLOCK
) -> None:
    """The row of `version` says its files are in place: one row's update, run inside the
    writer's own transaction (`Database.write`), with the other writes of its turn; no
    migration lock and no foreign key check of the whole database."""
    set_status(conn, version, "applied", duration_ms=duration_ms, now=clock.now())


# -- the files ---------------------------------------------------------------------------------
def swap_files(staged: Path, settings: Settings, config: Mapping[str, object]) -> None:
    """Put the staged bundle in place in the project folder; idempotent (deploy/swap.py):
    the server's own files there (`.env*`, `node_modules/`, what its `.alyxignore` lists)
    stay as they are."""
    project = settings.project_dir
    replace_file(staged / "schema.yaml", project / "schema.yaml")
    sync_tree(staged / "migrations", project / "migrations", project, "migrations")
    sync_tree(staged / "functions", settings.functions.path, project, "functions")
    folder = deployments_folder(settings)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{DEPLOYED_CONFIG}.tmp"
    tmp.write_text(json.dumps(dict(config), sort_keys=True, indent=2), encoding="utf-8")
    os.replace(tmp, folder / DEPLOYED_CONFIG)


# -- configuration -----------------------------------------------------------------------------
def read_deployed_config(settings: Settings) -> dict[str, object]:
    path = deployments_folder(settings) / DEPLOYED_CONFIG
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    return dict(data) if isinstance(data, dict) else {}


def with_config(settings: Settings, config: Mapping[str, object], reset: Iterable[str] = ()) -> Settings:
    """`settings` with the deployable keys of `config` (values as written, `${VAR}` taken
    from this server's environment) laid over; the keys in `reset` (set by the version
    being replaced) go back to alyx.yaml's values."""
    keys = {*config, *reset}
    if not keys:
        return settings
    typed = load_settings(
        settings.project_dir,
        mode=settings.mode,
        config_file=settings.config_file,
        overrides=server_values(config),
    )
    values = dict(settings.values)
    for path in keys:
        values[path] = typed.values[path]
    return build_settings(
        values, project_dir=settings.project_dir, mode=settings.mode, config_file=settings.config_file
    )


def deployed_settings(settings: Settings) -> Settings:
    """The settings with the last deploy's alyx.yaml keys (deployed.json) laid over."""
    return with_config(settings, read_deployed_config(settings))


# -- crash recovery ----------------------------------------------------------------------------
def recover_interrupted(
    settings: Settings,
    *,
    clock: Clock = SYSTEM_CLOCK,
) -> int | None:
    """Finish a deploy the server was killed in the middle of; the version finished, if any."""
    path = settings.database.path
    if not path.is_file():
        return None
    conn = _connect(path)
    try:
        columns = {str(r[1]) for r in conn.execute(f"PRAGMA table_info({DEPLOYMENTS_TABLE})")}
        if "bundle_sha256" not in columns:
            return None
        row = swapping_row(conn)
        if row is None:
            return None
        folder = deployments_folder(settings)
        try:
            with deploy_lock(folder):
                return _finish(conn, row, settings, folder, clock)
        except DeployInProgress:
            # Another server on this data folder is putting that version in place now.
            return None
    finally:
        conn.close()


def _finish(
    conn: sqlite3.Connection, row: DeploymentRow, settings: Settings, folder: Path, clock: Clock
) -> int:
    data = read_bundle_file(folder, row.bundle_sha256)
    limit = settings.values.get("deploy.max_bundle_size")
    max_size = limit if isinstance(limit, int) else MAX_BUNDLE_SIZE_DEFAULT
    contents = read_bundle(data, max_size=max_size, expected_sha256=row.bundle_sha256)
    staged = stage(contents, folder)
    swap_files(staged, settings, row.config)
    shutil.rmtree(staged, ignore_errors=True)
    with write_transaction(conn):
        set_status(conn, row.version, "applied", now=clock.now())
        summary = dict(row.summary, recovered=True)
        conn.execute(
            f"UPDATE {DEPLOYMENTS_TABLE} SET summary = ? WHERE version = ?",
            (json.dumps(summary, sort_keys=True), row.version),
        )
    log.warning("deploy of version %d was interrupted; its files are now in place", row.version)
    return row.version


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, timeout=30.0)
    conn.execute("PRAGMA busy_timeout = 30000")
    return conn
