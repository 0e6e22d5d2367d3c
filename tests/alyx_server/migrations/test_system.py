"""System migrations: every SPEC §6 table, idempotent, tracked, change triggers."""

from __future__ import annotations

import sqlite3

import pytest

from alyx_server.auth.sessions import Refresh, RefreshOutcome, family_state, open_session, rotate_session
from alyx_server.errors import MigrationError
from alyx_server.migrations.system import (
    SYSTEM_MIGRATIONS,
    SystemMigration,
    apply_system_migrations,
)


def columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]


def test_creates_every_system_table_with_its_columns(conn: sqlite3.Connection) -> None:
    ran = apply_system_migrations(conn)
    assert ran == [f"{m.version:03d}_{m.name}" for m in SYSTEM_MIGRATIONS]
    assert columns(conn, "_alyx_changes") == [
        "id", "collection", "operation", "doc_id", "changed_fields", "ts",
    ]
    assert columns(conn, "_alyx_users") == [
        "id", "email", "password_hash", "role", "verified", "disabled",
        "metadata", "app_metadata", "created_at", "updated_at",
    ]
    assert columns(conn, "_alyx_sessions") == [
        "id", "user_id", "family_id", "refresh_token_hash", "expires_at", "revoked_at",
        "replaced_by", "user_agent", "ip", "created_at",
    ]
    assert columns(conn, "_alyx_migrations") == [
        "id", "version", "name", "kind", "checksum", "applied_at", "schema", "down",
    ]
    for table in ("_alyx_tokens", "_alyx_deployments", "_alyx_auth_tokens"):
        assert "id" in columns(conn, table)
    assert "token_hash" in columns(conn, "_alyx_tokens")
    assert "rolled_back_at" in columns(conn, "_alyx_deployments")
    assert columns(conn, "_alyx_rate_limits") == ["name", "key", "at"]
    assert columns(conn, "_alyx_admin_sessions") == [
        "id", "kind", "user_id", "token_hash", "created_at", "last_seen_at", "expires_at",
        "revoked_at", "ip", "user_agent",
    ]  # fmt: skip
    tracked = conn.execute("SELECT version, name FROM _alyx_system_migrations").fetchall()
    assert tracked == [(m.version, m.name) for m in SYSTEM_MIGRATIONS]


def test_is_idempotent(conn: sqlite3.Connection) -> None:
    apply_system_migrations(conn)
    before = list(conn.iterdump())
    assert apply_system_migrations(conn) == []
    assert list(conn.iterdump()) == before


def test_users_defaults_uniqueness_and_change_feed(conn: sqlite3.Connection) -> None:
    apply_system_migrations(conn)
    conn.execute("INSERT INTO _alyx_users (email, password_hash) VALUES ('Ann@Example.com', 'h')")
    user_id, role, verified, metadata, created = conn.execute(
        "SELECT id, role, verified, metadata, created_at FROM _alyx_users"
    ).fetchone()
    assert len(user_id) == 36 and user_id[14] == "4"
    assert (role, verified, metadata) == ("user", 0, "{}")
    assert created.endswith("Z") and len(created) == 24
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
        conn.execute("INSERT INTO _alyx_users (email) VALUES ('ann@example.COM')")
    conn.execute("UPDATE _alyx_users SET role = 'admin'")
    conn.execute(
        "INSERT INTO _alyx_sessions (user_id, family_id, refresh_token_hash, expires_at) "
        "VALUES (?, 'f', 'r', '2030-01-01T00:00:00.000Z')",
        (user_id,),
    )
    conn.execute("DELETE FROM _alyx_users")
    assert conn.execute("SELECT count(*) FROM _alyx_sessions").fetchone() == (0,)
    changes = conn.execute(
        "SELECT collection, operation, doc_id, changed_fields FROM _alyx_changes ORDER BY id"
    ).fetchall()
    assert changes[0] == ("_alyx_users", "INSERT", user_id, None)
    assert changes[1] == ("_alyx_users", "UPDATE", user_id, '["role","updated_at"]')
    # A new session row logs nothing (a family's start never ends one); its deletion
    # while live logs a change naming its family (step 13).
    deletes = {c[:3] for c in changes[2:]}
    assert deletes == {("_alyx_users", "DELETE", user_id), ("_alyx_sessions", "DELETE", "f")}


def test_a_failing_step_leaves_earlier_steps_and_nothing_of_itself(
    conn: sqlite3.Connection,
) -> None:
    steps = (
        SystemMigration(1, "one", ("CREATE TABLE one (x)",)),
        SystemMigration(2, "two", ("CREATE TABLE two (x)", "CREATE TABLE one (y)")),
    )
    with pytest.raises(sqlite3.OperationalError, match="already exists"):
        apply_system_migrations(conn, steps)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "one" in tables and "two" not in tables
    assert conn.execute("SELECT version FROM _alyx_system_migrations").fetchall() == [(1,)]


def test_refuses_a_database_from_a_newer_alyx(conn: sqlite3.Connection) -> None:
    apply_system_migrations(conn)
    conn.execute("INSERT INTO _alyx_system_migrations (version, name) VALUES (99, 'future')")
    with pytest.raises(MigrationError, match="system migration 99, newer than this version"):
        apply_system_migrations(conn)


NOW, LATER = "2026-01-01T00:00:00.000Z", "2027-01-01T00:00:00.000Z"


def rotate(conn: sqlite3.Connection, token_hash: str, new_hash: str) -> RefreshOutcome:
    return rotate_session(
        conn, token_hash=token_hash, new_hash=new_hash, now=NOW, expires_at=LATER, user_agent=None, ip=None
    )


def test_session_changes_name_the_family_and_a_rotation_logs_none(conn: sqlite3.Connection) -> None:
    apply_system_migrations(conn)
    conn.execute("INSERT INTO _alyx_users (id, email) VALUES ('u', 'ann@example.com')")
    conn.execute("DELETE FROM _alyx_changes")
    assert rotate(conn, "missing", "x").kind is Refresh.UNKNOWN
    first = open_session(
        conn, user_id="u", token_hash="h1", expires_at=LATER, now=NOW, user_agent=None, ip=None
    )
    outcome = rotate(conn, "h1", "h2")
    assert outcome.kind is Refresh.ROTATED and outcome.session is not None
    assert outcome.session.family_id == first.family_id
    assert conn.execute("SELECT count(*) FROM _alyx_changes").fetchone() == (0,)
    assert rotate(conn, "h1", "h3").kind is Refresh.REUSED
    assert family_state(conn, first.family_id).live_row is None
    logged = "SELECT collection, operation, doc_id, changed_fields FROM _alyx_changes"
    assert conn.execute(logged).fetchall() == [
        ("_alyx_sessions", "UPDATE", first.family_id, '["revoked_at"]')
    ]
