"""Alyx's own tables, created by internal, versioned system migrations.

They are separate from the user's migration files: `_alyx_system_migrations` records
which of the steps below ran, each step commits together with its tracking row, and
`apply_system_migrations` is safe to call at every start. A new system table or column
is a new step appended to `SYSTEM_MIGRATIONS`; steps that have shipped are never edited.

`_alyx_users` and `_alyx_tokens` carry the same change triggers as collections, so a
per-process cache of accounts can be dropped, and a realtime connection can lose the
access its credential lost, when the change feed shows a row changed, whichever process
wrote it. `_alyx_sessions` (since step 13) logs a change only when a session family may
have died or changed hands, and names the family, not the row: a revocation, a live row
deleted, an owner changed. A rotation (a refresh retiring its row for a new one) and a
new row log nothing, since the family stays live with the same owner; so a refresh
writes no change row, and other processes have nothing to catch up on after it.

The tables' names are those of `schema/system_tables.py` (re-exported here for the
modules that name them with the steps that create them).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from alyx_server.errors import MigrationError
from alyx_server.migrations.transactions import write_transaction
from alyx_server.schema.ddl import NOW_SQL, UUID4_SQL, trigger_sql
from alyx_server.schema.model import Collection, Field, FieldType
from alyx_server.schema.system_tables import (
    ACTOR_TABLE,
    ADMIN_SESSIONS_TABLE,
    AUTH_TOKENS_TABLE,
    CHANGE_DOCS_TABLE,
    CHANGES_TABLE,
    DEPLOYMENTS_TABLE,
    HISTORY_TABLE,
    HOOK_CURSORS_TABLE,
    IDENTITIES_TABLE,
    JOBS_TABLE,
    OAUTH_FLOWS_TABLE,
    RATE_LIMITS_TABLE,
    SCHEDULES_TABLE,
    SESSIONS_TABLE,
    SYSTEM_TRACKING_TABLE,
    TOKENS_TABLE,
    USERS_TABLE,
    WEBHOOK_CURSOR_TABLE,
    WEBHOOK_DELIVERIES_TABLE,
    WEBHOOKS_TABLE,
)

__all__ = [
    "AUTH_TOKENS_TABLE",
    "DEPLOYMENTS_TABLE",
    "HISTORY_TABLE",
    "RATE_LIMITS_TABLE",
    "SESSIONS_TABLE",
    "SYSTEM_MIGRATIONS",
    "SYSTEM_TRACKING_TABLE",
    "TOKENS_TABLE",
    "SystemMigration",
    "applied_system_versions",
    "apply_system_migrations",
]

_ID = f"TEXT PRIMARY KEY NOT NULL DEFAULT ({UUID4_SQL})"
_NOW = f"TEXT NOT NULL DEFAULT ({NOW_SQL})"


@dataclass(frozen=True, slots=True)
class SystemMigration:
    """One step of Alyx's own schema: a version, a name and the statements it runs."""

    version: int
    name: str
    statements: tuple[str, ...]


def _change_feed() -> tuple[str, ...]:
    # AUTOINCREMENT: ids are never reused after pruning, the poller's high-water mark relies on it.
    return (
        f"CREATE TABLE {CHANGES_TABLE} (\n"
        "  id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
        "  collection TEXT NOT NULL,\n"
        "  operation TEXT NOT NULL CHECK (operation IN ('INSERT', 'UPDATE', 'DELETE')),\n"
        "  doc_id,\n"
        "  changed_fields TEXT,\n"
        "  ts TEXT NOT NULL\n"
        ")",
        f"CREATE INDEX idx_{CHANGES_TABLE}_ts ON {CHANGES_TABLE} (ts)",
    )


def _migration_history() -> tuple[str, ...]:
    return (
        f"CREATE TABLE {HISTORY_TABLE} (\n"
        "  id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
        "  version INTEGER,\n"
        "  name TEXT NOT NULL,\n"
        "  kind TEXT NOT NULL CHECK (kind IN ('auto', 'file')),\n"
        "  checksum TEXT NOT NULL,\n"
        f"  applied_at {_NOW},\n"
        "  schema TEXT NOT NULL,\n"
        "  down TEXT NOT NULL DEFAULT '[]'\n"
        ")",
        f"CREATE UNIQUE INDEX uq_{HISTORY_TABLE}_version ON {HISTORY_TABLE} (version) "
        "WHERE version IS NOT NULL",
    )


def _trigger_model(table: str, columns: str, *, on_update: str | None = None) -> Collection:
    """Just enough of a collection model for `ddl.trigger_sql`: every column (the UPDATE
    trigger compares each one), the primary key and the `onUpdate: now` column."""
    fields = [
        Field(
            name,
            FieldType.TIMESTAMP if name == on_update else FieldType.TEXT,
            primary=name == "id",
            on_update_now=name == on_update,
        )
        for name in columns.split()
    ]
    return Collection(table, tuple(fields))


_USER_COLUMNS = "id email password_hash role verified disabled metadata app_metadata created_at updated_at"
_SESSION_COLUMNS = (
    "id user_id family_id refresh_token_hash expires_at revoked_at replaced_by user_agent ip created_at"
)


def _accounts() -> tuple[str, ...]:
    users = (
        f"CREATE TABLE {USERS_TABLE} (\n"
        f"  id {_ID},\n"
        "  email TEXT NOT NULL COLLATE NOCASE,\n"
        "  password_hash TEXT,\n"
        "  role TEXT NOT NULL DEFAULT 'user',\n"
        "  verified INTEGER NOT NULL DEFAULT 0 CHECK (verified IN (0, 1)),\n"
        "  disabled INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),\n"
        "  metadata TEXT NOT NULL DEFAULT '{}',\n"
        "  app_metadata TEXT NOT NULL DEFAULT '{}',\n"
        f"  created_at {_NOW},\n"
        f"  updated_at {_NOW}\n"
        ")"
    )
    sessions = (
        f"CREATE TABLE {SESSIONS_TABLE} (\n"
        f"  id {_ID},\n"
        f"  user_id TEXT NOT NULL REFERENCES {USERS_TABLE}(id) ON DELETE CASCADE,\n"
        "  family_id TEXT NOT NULL,\n"
        "  refresh_token_hash TEXT NOT NULL,\n"
        "  expires_at TEXT NOT NULL,\n"
        "  revoked_at TEXT,\n"
        "  replaced_by TEXT,\n"
        "  user_agent TEXT,\n"
        "  ip TEXT,\n"
        f"  created_at {_NOW}\n"
        ")"
    )
    auth_tokens = (
        f"CREATE TABLE {AUTH_TOKENS_TABLE} (\n"
        f"  id {_ID},\n"
        f"  user_id TEXT NOT NULL REFERENCES {USERS_TABLE}(id) ON DELETE CASCADE,\n"
        "  kind TEXT NOT NULL CHECK (kind IN ('verify', 'reset')),\n"
        "  token_hash TEXT NOT NULL,\n"
        "  expires_at TEXT NOT NULL,\n"
        "  used_at TEXT,\n"
        f"  created_at {_NOW}\n"
        ")"
    )
    return (
        users,
        f"CREATE UNIQUE INDEX uq_{USERS_TABLE}_email ON {USERS_TABLE} (email)",
        sessions,
        f"CREATE UNIQUE INDEX uq_{SESSIONS_TABLE}_refresh_token_hash "
        f"ON {SESSIONS_TABLE} (refresh_token_hash)",
        f"CREATE INDEX idx_{SESSIONS_TABLE}_user_id ON {SESSIONS_TABLE} (user_id)",
        f"CREATE INDEX idx_{SESSIONS_TABLE}_family_id ON {SESSIONS_TABLE} (family_id)",
        auth_tokens,
        f"CREATE UNIQUE INDEX uq_{AUTH_TOKENS_TABLE}_token_hash ON {AUTH_TOKENS_TABLE} (token_hash)",
        f"CREATE INDEX idx_{AUTH_TOKENS_TABLE}_user_id ON {AUTH_TOKENS_TABLE} (user_id)",
        *trigger_sql(_trigger_model(USERS_TABLE, _USER_COLUMNS, on_update="updated_at")),
        *trigger_sql(_trigger_model(SESSIONS_TABLE, _SESSION_COLUMNS)),
    )


def _operations() -> tuple[str, ...]:
    tokens = (
        f"CREATE TABLE {TOKENS_TABLE} (\n"
        f"  id {_ID},\n"
        "  name TEXT NOT NULL,\n"
        "  kind TEXT NOT NULL CHECK (kind IN ('admin', 'deploy')),\n"
        "  token_hash TEXT NOT NULL,\n"
        "  permissions TEXT NOT NULL DEFAULT '[]',\n"
        "  expires_at TEXT,\n"
        f"  created_at {_NOW},\n"
        "  last_used_at TEXT,\n"
        "  revoked_at TEXT\n"
        ")"
    )
    deployments = (
        f"CREATE TABLE {DEPLOYMENTS_TABLE} (\n"
        f"  id {_ID},\n"
        "  version INTEGER NOT NULL,\n"
        "  schema TEXT NOT NULL,\n"
        "  functions TEXT NOT NULL DEFAULT '{}',\n"
        "  status TEXT NOT NULL DEFAULT 'prepared',\n"
        "  error TEXT,\n"
        f"  created_at {_NOW},\n"
        "  applied_at TEXT,\n"
        "  rolled_back_at TEXT\n"
        ")"
    )
    return (
        tokens,
        f"CREATE UNIQUE INDEX uq_{TOKENS_TABLE}_token_hash ON {TOKENS_TABLE} (token_hash)",
        deployments,
        f"CREATE UNIQUE INDEX uq_{DEPLOYMENTS_TABLE}_version ON {DEPLOYMENTS_TABLE} (version)",
    )


_TOKEN_COLUMNS = "id name kind token_hash permissions expires_at created_at last_used_at revoked_at"


def _token_change_feed() -> tuple[str, ...]:
    # A revoked admin or deploy token must reach open realtime connections, also when
    # `alyx admin revoke-token` (another process) wrote it.
    return tuple(trigger_sql(_trigger_model(TOKENS_TABLE, _TOKEN_COLUMNS)))


def _deploy_history() -> tuple[str, ...]:
    # `alyx deploy` (alyx_server/deploy/): what each deployment shipped and how it ended.
    columns = (
        "bundle_sha256 TEXT",
        "token_name TEXT",
        "message TEXT NOT NULL DEFAULT ''",
        "git_commit TEXT",
        "git_dirty INTEGER CHECK (git_dirty IN (0, 1))",
        "summary TEXT NOT NULL DEFAULT '{}'",
        "config TEXT NOT NULL DEFAULT '{}'",
        "history_head INTEGER NOT NULL DEFAULT 0",
        "duration_ms INTEGER",
        "rollback_of INTEGER",
    )
    return tuple(f"ALTER TABLE {DEPLOYMENTS_TABLE} ADD COLUMN {c}" for c in columns)


def _rate_limits() -> tuple[str, ...]:
    # auth/ratelimit.py: the counted attempts of each key of each limit (`name` is login,
    # register or reset), one row per attempt at `at` (Unix seconds), so that every
    # process serving the database counts them all.
    return (
        f"CREATE TABLE {RATE_LIMITS_TABLE} (\n"
        "  name TEXT NOT NULL,\n"
        "  key TEXT NOT NULL,\n"
        "  at REAL NOT NULL\n"
        ")",
        f"CREATE INDEX ix_{RATE_LIMITS_TABLE}_key_at ON {RATE_LIMITS_TABLE} (name, key, at)",
    )


def _admin_sessions() -> tuple[str, ...]:
    # auth/admin_sessions.py: the admin UI's sessions (kind 'session') and the one-time
    # sign-in links `alyx dev` prints (kind 'link'). Only the SHA-256 of the cookie or link
    # secret is stored; every worker reads the same rows, so a sign-out or an expiry holds
    # in all of them.
    return (
        f"CREATE TABLE {ADMIN_SESSIONS_TABLE} (\n"
        f"  id {_ID},\n"
        "  kind TEXT NOT NULL CHECK (kind IN ('session', 'link')),\n"
        f"  user_id TEXT NOT NULL REFERENCES {USERS_TABLE}(id) ON DELETE CASCADE,\n"
        "  token_hash TEXT NOT NULL,\n"
        f"  created_at {_NOW},\n"
        "  last_seen_at TEXT NOT NULL,\n"
        "  expires_at TEXT NOT NULL,\n"
        "  revoked_at TEXT,\n"
        "  ip TEXT,\n"
        "  user_agent TEXT\n"
        ")",
        f"CREATE UNIQUE INDEX uq_{ADMIN_SESSIONS_TABLE}_token_hash ON {ADMIN_SESSIONS_TABLE} (token_hash)",
        f"CREATE INDEX idx_{ADMIN_SESSIONS_TABLE}_user_id ON {ADMIN_SESSIONS_TABLE} (user_id)",
    )


def _jobs_and_webhooks() -> tuple[str, ...]:
    # alyx_server/jobs: times are Unix seconds (REAL) so that a claim compares numbers.
    # A queued job with a dedupe_key holds its (name, key) until it is done or dead.
    jobs = (
        f"CREATE TABLE {JOBS_TABLE} (\n"
        "  id TEXT PRIMARY KEY NOT NULL,\n"
        "  name TEXT NOT NULL,\n"
        "  payload TEXT NOT NULL DEFAULT '{}',\n"
        "  state TEXT NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'running', 'done', 'dead')),\n"
        "  attempts INTEGER NOT NULL DEFAULT 0,\n"
        "  max_attempts INTEGER NOT NULL,\n"
        "  run_at REAL NOT NULL,\n"
        "  lease_owner TEXT,\n"
        "  lease_until REAL,\n"
        "  dedupe_key TEXT,\n"
        "  last_error TEXT,\n"
        "  result TEXT,\n"
        "  created_at REAL NOT NULL,\n"
        "  updated_at REAL NOT NULL,\n"
        "  finished_at REAL\n"
        ")"
    )
    # alyx_server/webhooks: those added through the admin API, the delivery log, and
    # how far the dispatcher has read the change log (a fresh database starts at its end).
    webhooks = (
        f"CREATE TABLE {WEBHOOKS_TABLE} (\n"
        "  name TEXT PRIMARY KEY NOT NULL,\n"
        "  url TEXT NOT NULL,\n"
        "  events TEXT NOT NULL DEFAULT '[]',\n"
        "  secret TEXT NOT NULL,\n"
        "  created_at REAL NOT NULL\n"
        ")"
    )
    deliveries = (
        f"CREATE TABLE {WEBHOOK_DELIVERIES_TABLE} (\n"
        "  id TEXT PRIMARY KEY NOT NULL,\n"
        "  webhook TEXT NOT NULL,\n"
        "  event TEXT NOT NULL,\n"
        "  change_id INTEGER,\n"
        "  body TEXT NOT NULL,\n"
        "  status TEXT NOT NULL DEFAULT 'pending'"
        " CHECK (status IN ('pending', 'delivered', 'failed', 'refused')),\n"
        "  attempts INTEGER NOT NULL DEFAULT 0,\n"
        "  response_status INTEGER,\n"
        "  response_ms REAL,\n"
        "  last_error TEXT,\n"
        "  created_at REAL NOT NULL,\n"
        "  updated_at REAL NOT NULL\n"
        ")"
    )
    return (
        jobs,
        f"CREATE INDEX ix_{JOBS_TABLE}_due ON {JOBS_TABLE} (state, run_at)",
        f"CREATE INDEX ix_{JOBS_TABLE}_name_state ON {JOBS_TABLE} (name, state)",
        f"CREATE UNIQUE INDEX uq_{JOBS_TABLE}_dedupe ON {JOBS_TABLE} (name, dedupe_key) "
        "WHERE dedupe_key IS NOT NULL AND state IN ('queued', 'running')",
        webhooks,
        deliveries,
        f"CREATE INDEX ix_{WEBHOOK_DELIVERIES_TABLE}_webhook "
        f"ON {WEBHOOK_DELIVERIES_TABLE} (webhook, created_at)",
        f"CREATE TABLE {WEBHOOK_CURSOR_TABLE} (\n"
        "  id INTEGER PRIMARY KEY CHECK (id = 1),\n"
        "  change_id INTEGER NOT NULL\n"
        ")",
        f"INSERT INTO {WEBHOOK_CURSOR_TABLE} (id, change_id) "
        f"SELECT 1, coalesce(max(id), 0) FROM {CHANGES_TABLE}",
    )


def _hooks_and_schedules() -> tuple[str, ...]:
    # alyx_server/automation: times are Unix seconds (REAL) of the server's clock.
    # `_alyx_change_docs` rows are written by the change triggers of collections that have
    # after-write hooks (automation/capture.py), keyed by the `_alyx_changes` id; rows
    # (JSON arrays of the columns in field order) are pruned with the change rows.
    return (
        f"CREATE TABLE {CHANGE_DOCS_TABLE} (\n"
        "  change_id INTEGER PRIMARY KEY,\n"
        "  doc TEXT,\n"
        "  previous TEXT,\n"
        "  actor TEXT\n"
        ")",
        f"CREATE TABLE {ACTOR_TABLE} (\n  id INTEGER PRIMARY KEY CHECK (id = 1),\n  actor TEXT\n)",
        f"INSERT INTO {ACTOR_TABLE} (id, actor) VALUES (1, NULL)",
        f"CREATE TABLE {HOOK_CURSORS_TABLE} (\n"
        "  hook TEXT PRIMARY KEY NOT NULL,\n"
        "  change_id INTEGER NOT NULL,\n"
        "  lease_owner TEXT,\n"
        "  lease_until REAL,\n"
        "  delivered INTEGER NOT NULL DEFAULT 0,\n"
        "  failed INTEGER NOT NULL DEFAULT 0,\n"
        "  last_error TEXT,\n"
        "  updated_at REAL\n"
        ")",
        f"CREATE TABLE {SCHEDULES_TABLE} (\n"
        "  name TEXT PRIMARY KEY NOT NULL,\n"
        "  spec TEXT NOT NULL,\n"
        "  next_run REAL NOT NULL,\n"
        "  last_run REAL,\n"
        "  last_scheduled REAL,\n"
        "  last_status TEXT,\n"
        "  last_error TEXT,\n"
        "  last_duration_ms REAL,\n"
        "  runs INTEGER NOT NULL DEFAULT 0,\n"
        "  skipped INTEGER NOT NULL DEFAULT 0,\n"
        "  lease_owner TEXT,\n"
        "  lease_until REAL\n"
        ")",
    )


def _identities() -> tuple[str, ...]:
    # auth/identities.py: OAuth / OpenID identities, one per (provider, subject), each
    # linked to one account. auth/oauth_flows.py: the sign-ins in progress (kind 'state':
    # the state's SHA-256, the PKCE verifier, the nonce, the browser binding), the one-time
    # exchange codes (kind 'exchange') and link tickets (kind 'link'), in the database so
    # that any process serving it can finish a flow another one started.
    return (
        f"CREATE TABLE {IDENTITIES_TABLE} (\n"
        f"  id {_ID},\n"
        "  provider TEXT NOT NULL,\n"
        "  subject TEXT NOT NULL,\n"
        f"  user_id TEXT NOT NULL REFERENCES {USERS_TABLE}(id) ON DELETE CASCADE,\n"
        "  email TEXT,\n"
        "  email_verified INTEGER NOT NULL DEFAULT 0 CHECK (email_verified IN (0, 1)),\n"
        f"  created_at {_NOW},\n"
        f"  updated_at {_NOW},\n"
        "  last_sign_in_at TEXT\n"
        ")",
        f"CREATE UNIQUE INDEX uq_{IDENTITIES_TABLE}_provider_subject "
        f"ON {IDENTITIES_TABLE} (provider, subject)",
        f"CREATE INDEX idx_{IDENTITIES_TABLE}_user_id ON {IDENTITIES_TABLE} (user_id)",
        f"CREATE TABLE {OAUTH_FLOWS_TABLE} (\n"
        f"  id {_ID},\n"
        "  kind TEXT NOT NULL CHECK (kind IN ('state', 'exchange', 'link')),\n"
        "  token_hash TEXT NOT NULL,\n"
        "  provider TEXT NOT NULL,\n"
        "  redirect TEXT NOT NULL,\n"
        "  callback_url TEXT,\n"
        "  code_verifier TEXT,\n"
        "  nonce TEXT,\n"
        "  browser_hash TEXT,\n"
        f"  user_id TEXT REFERENCES {USERS_TABLE}(id) ON DELETE CASCADE,\n"
        "  expires_at TEXT NOT NULL,\n"
        "  used_at TEXT,\n"
        f"  created_at {_NOW}\n"
        ")",
        f"CREATE UNIQUE INDEX uq_{OAUTH_FLOWS_TABLE}_token_hash ON {OAUTH_FLOWS_TABLE} (token_hash)",
        f"CREATE INDEX idx_{OAUTH_FLOWS_TABLE}_expires_at ON {OAUTH_FLOWS_TABLE} (expires_at)",
    )


def _oauth_app_binding() -> tuple[str, ...]:
    # The S256 challenge of a verifier the app keeps (auth/oauth.py): carried from the
    # state to the exchange code, which then works only with that verifier.
    return (f"ALTER TABLE {OAUTH_FLOWS_TABLE} ADD COLUMN app_challenge TEXT",)


def _session_family_changes() -> tuple[str, ...]:
    ins, upd, dele = (f"_alyx_chg_{SESSIONS_TABLE}_{op}" for op in ("ins", "upd", "del"))
    watched = ("revoked_at", "user_id", "family_id")
    changed = (
        "(SELECT json_group_array(value) FROM json_each(json_array("
        + ", ".join(f"CASE WHEN OLD.{c} IS NOT NEW.{c} THEN '{c}' END" for c in watched)
        + ")) WHERE type != 'null')"
    )
    # A rotation's retire is the one UPDATE that sets replaced_by: its family stays live.
    when = (
        "(" + " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in watched) + ")"
        " AND NOT (OLD.replaced_by IS NULL AND NEW.replaced_by IS NOT NULL)"
    )
    log = f"INSERT INTO {CHANGES_TABLE} (collection, operation, doc_id, changed_fields, ts) "
    return (
        f"DROP TRIGGER IF EXISTS {ins}",
        f"DROP TRIGGER IF EXISTS {upd}",
        f"DROP TRIGGER IF EXISTS {dele}",
        # A row moved to another family (by hand) changes both: the second row names the new one.
        f"CREATE TRIGGER {upd} AFTER UPDATE ON {SESSIONS_TABLE} WHEN {when} BEGIN "
        f"{log}VALUES ('{SESSIONS_TABLE}', 'UPDATE', OLD.family_id, {changed}, {NOW_SQL}); "
        f"{log}SELECT '{SESSIONS_TABLE}', 'UPDATE', NEW.family_id, {changed}, {NOW_SQL} "
        "WHERE NEW.family_id IS NOT OLD.family_id; END",
        f"CREATE TRIGGER {dele} AFTER DELETE ON {SESSIONS_TABLE} WHEN OLD.revoked_at IS NULL BEGIN "
        f"{log}VALUES ('{SESSIONS_TABLE}', 'DELETE', OLD.family_id, NULL, {NOW_SQL}); END",
    )


SYSTEM_MIGRATIONS: tuple[SystemMigration, ...] = (
    SystemMigration(1, "change_feed", _change_feed()),
    SystemMigration(2, "migration_history", _migration_history()),
    SystemMigration(3, "accounts", _accounts()),
    SystemMigration(4, "tokens_and_deployments", _operations()),
    SystemMigration(5, "token_change_feed", _token_change_feed()),
    SystemMigration(6, "deploy_history", _deploy_history()),
    SystemMigration(7, "rate_limits", _rate_limits()),
    SystemMigration(8, "admin_sessions", _admin_sessions()),
    SystemMigration(9, "jobs_and_webhooks", _jobs_and_webhooks()),
    SystemMigration(10, "hooks_and_schedules", _hooks_and_schedules()),
    SystemMigration(11, "identities", _identities()),
    SystemMigration(12, "oauth_app_binding", _oauth_app_binding()),
    SystemMigration(13, "session_family_changes", _session_family_changes()),
)


def _ensure_tracking_table(conn: sqlite3.Connection) -> None:
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {SYSTEM_TRACKING_TABLE} (\n"
        "  version INTEGER PRIMARY KEY,\n"
        "  name TEXT NOT NULL,\n"
        f"  applied_at {_NOW}\n"
        ")"
    )


def applied_system_versions(conn: sqlite3.Connection) -> set[int]:
    """Versions of the system migrations this database has (empty for a new file)."""
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (SYSTEM_TRACKING_TABLE,)
    ).fetchone()
    if exists is None:
        return set()
    return {int(row[0]) for row in conn.execute(f"SELECT version FROM {SYSTEM_TRACKING_TABLE}")}


def apply_system_migrations(
    conn: sqlite3.Connection, migrations: Sequence[SystemMigration] = SYSTEM_MIGRATIONS
) -> list[str]:
    """Run the system migrations this database lacks, each in its own transaction.

    Returns the names of the steps that ran (empty when the database is current).
    Refuses a database written by a newer Alyx, whose tables this version cannot know.
    """
    applied = applied_system_versions(conn)
    known = {m.version for m in migrations}
    newer = sorted(v for v in applied if v not in known and v > max(known, default=0))
    if newer:
        raise MigrationError(
            f"this database has Alyx system migration {newer[-1]}, newer than this version of "
            "Alyx knows; upgrade Alyx to open it"
        )
    ran: list[str] = []
    for migration in sorted(migrations, key=lambda m: m.version):
        if migration.version in applied:
            continue
        with write_transaction(conn):
            _ensure_tracking_table(conn)
            if conn.execute(
                f"SELECT 1 FROM {SYSTEM_TRACKING_TABLE} WHERE version = ?", (migration.version,)
            ).fetchone():
                continue  # another process ran it between our read and our lock
            for statement in migration.statements:
                conn.execute(statement)
            conn.execute(
                f"INSERT INTO {SYSTEM_TRACKING_TABLE} (version, name) VALUES (?, ?)",
                (migration.version, migration.name),
            )
        ran.append(f"{migration.version:03d}_{migration.name}")
    return ran
