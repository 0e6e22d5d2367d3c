"""Account management for administrators (`/api/admin/users`, SPEC §8 and §12).

Callers are admin users or admin tokens with the `users` permission (`require_admin`).
An administrator sets what users cannot set themselves: `role`, `app_metadata`,
`verified` and `disabled`. Disabling an account revokes its sessions, and its live
access tokens are refused at once (the cached account row is dropped by the change
feed). Deleting an account removes its sessions and one-time tokens with it.

The last enabled admin account cannot be deleted, demoted or disabled (409 `LAST_ADMIN`),
by anyone: not by itself, another admin or an admin token, nor through `DELETE
/api/auth/me`. Admin tokens do not count as "someone who can administer": they are scoped,
may expire, cannot sign in to the dashboard, and are revoked when a leak is suspected;
an instance must keep one person who can. The count and the change run in one write
transaction (the single writer), so two admins demoting each other cannot both succeed.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from typing import Any

from alyx_server.auth.context import AuthContext
from alyx_server.auth.passwords import check_password_policy
from alyx_server.auth.service import AuthService
from alyx_server.auth.sessions import revoke_user_sessions
from alyx_server.auth.users import (
    UserRecord,
    admin_count,
    check_metadata,
    check_role,
    delete_user,
    insert_user,
    list_users,
    normalize_email,
    update_user,
    user_by_email,
    user_by_id,
)
from alyx_server.errors import Conflict, FieldIssue, Forbidden, NotFound, Unauthorized, ValidationError

__all__ = [
    "create_account",
    "get_account",
    "keep_an_admin",
    "list_accounts",
    "remove_account",
    "require_admin",
    "update_account",
]

_CREATE_FIELDS = frozenset({"email", "password", "role", "verified", "metadata", "app_metadata"})
_UPDATE_FIELDS = frozenset({"role", "verified", "disabled", "metadata", "app_metadata"})


def require_admin(auth: AuthContext | None, permission: str = "users") -> AuthContext:
    """The caller when it may use `permission`: 401 when anonymous, 403 otherwise."""
    if auth is None:
        raise Unauthorized("sign in as an administrator, or send an admin token")
    if not auth.allows(permission):
        raise Forbidden(f"this needs an administrator (or an admin token with the {permission!r} permission)")
    return auth


def _refuse_unknown(body: Mapping[str, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        message = f"unknown field {unknown[0]!r}; allowed: {', '.join(sorted(allowed))}"
        raise ValidationError(message, [FieldIssue(k, "unknown", message) for k in unknown])


def _flag(body: Mapping[str, Any], name: str) -> bool:
    value = body[name]
    if not isinstance(value, bool):
        message = f"{name} must be true or false"
        raise ValidationError(message, [FieldIssue(name, "invalid_type", message)])
    return value


def _not_found(user_id: str) -> NotFound:
    return NotFound(f"no account with id {user_id!r}", code="USER_NOT_FOUND")


def keep_an_admin(conn: sqlite3.Connection, user_id: str, action: str, changes: Mapping[str, Any]) -> None:
    """409 `LAST_ADMIN` when `action` (delete, or `changes`) would leave no enabled admin.

    Runs inside the write that makes the change, so the count cannot go stale under it.
    """
    target = user_by_id(conn, user_id)
    if target is None or not target.is_admin or target.disabled:
        return
    if action == "update":
        if changes.get("role", "admin") != "admin":
            action = "demote"
        elif changes.get("disabled"):
            action = "disable"
        else:
            return
    if admin_count(conn) > 1:
        return
    raise Conflict(
        f"cannot {action} {target.email}: it is the last enabled admin account, and without one "
        "no one could administer this server; make another account an admin first (PATCH "
        '/api/admin/users/{id} with {"role": "admin"}, or alyx admin create <email>)',
        code="LAST_ADMIN",
    )


async def list_accounts(
    svc: AuthService, *, limit: int, offset: int, email: str | None
) -> tuple[list[UserRecord], int]:
    """A page of accounts, oldest first, with the total."""
    return await svc.db.read(lambda conn: list_users(conn, limit=limit, offset=offset, email=email))


def get_account(svc: AuthService, user_id: str) -> UserRecord:
    user = svc.db.read_now(lambda conn: user_by_id(conn, user_id))
    if user is None:
        raise _not_found(user_id)
    return user


async def create_account(svc: AuthService, body: Mapping[str, Any]) -> UserRecord:
    """Create an account with a password, and optionally a role, flags and metadata."""
    _refuse_unknown(body, _CREATE_FIELDS)
    email = normalize_email(body.get("email"))
    encoded = check_password_policy(body.get("password"), svc.settings.password)
    role = check_role(body.get("role", "user"))
    verified = _flag(body, "verified") if "verified" in body else False
    meta = check_metadata(body.get("metadata", {}), "metadata")
    app_meta = check_metadata(body.get("app_metadata", {}), "app_metadata")
    if svc.db.read_now(lambda conn: user_by_email(conn, email)) is not None:
        raise Conflict("an account with this email already exists", code="USER_EXISTS", field="email")
    password_hash = await svc.hasher.hash(encoded)
    now = svc.stamp()
    return await svc.db.write(
        lambda conn: insert_user(
            conn, email=email, password_hash=password_hash, now=now, role=role, verified=verified,
            metadata=meta, app_metadata=app_meta,
        )
    )  # fmt: skip


async def update_account(svc: AuthService, user_id: str, body: Mapping[str, Any]) -> UserRecord:
    """Set role, flags or metadata; disabling revokes every session of the account."""
    _refuse_unknown(body, _UPDATE_FIELDS)
    changes: dict[str, Any] = {}
    if "role" in body:
        changes["role"] = check_role(body["role"])
    for name in ("verified", "disabled"):
        if name in body:
            changes[name] = _flag(body, name)
    for name in ("metadata", "app_metadata"):
        if name in body:
            changes[name] = check_metadata(body[name], name)
    now = svc.stamp()

    def write(conn: sqlite3.Connection) -> UserRecord | None:
        if not changes:
            return user_by_id(conn, user_id)
        keep_an_admin(conn, user_id, "update", changes)
        updated = update_user(conn, user_id, changes, now=now)
        if updated is not None and changes.get("disabled"):
            revoke_user_sessions(conn, user_id, now)
        return updated

    user = await svc.db.write(write)
    if user is None:
        raise _not_found(user_id)
    return user


async def remove_account(svc: AuthService, user_id: str) -> None:
    """Delete an account and everything that hangs off it (never the last admin)."""

    def write(conn: sqlite3.Connection) -> bool:
        keep_an_admin(conn, user_id, "delete", {})
        return delete_user(conn, user_id)

    if not await svc.db.write(write):
        raise _not_found(user_id)
