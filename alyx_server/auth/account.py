"""Self-service on one's own account (SPEC §8): profile, password, deletion, email flows.

    update_profile       PATCH /me: `metadata` only; role, app_metadata, verified and
                         disabled are an administrator's (403), anything else is 400
    change_password      current password checked; every other session revoked
    delete_account       the password checked, or for an account without one (OAuth only)
                         the one-time code of a sign-in made just before (60 s); sessions,
                         tokens and identities go with the account
    request_verification / verify_email
    request_reset / reset_password     reset revokes every session and marks the email
                                       verified (the code reached the inbox)

Requests for an email (verification or reset by address) answer the same whether or not
the address has an account: the look-up and the sending run in the background, after
the answer. Password checks here count against the login rate limit, so a stolen access
token cannot be used to guess the password.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from typing import Any

from alyx_server.auth.admin_users import keep_an_admin
from alyx_server.auth.context import AuthContext
from alyx_server.auth.oauth_flows import redeem_exchange_code
from alyx_server.auth.onetime import OneTimeKind, check_one_time, redeem_one_time
from alyx_server.auth.passwords import check_password_policy
from alyx_server.auth.service import AuthService, Client, account_disabled, opaque_token
from alyx_server.auth.sessions import revoke_user_sessions
from alyx_server.auth.tokens import hash_secret
from alyx_server.auth.users import (
    UserRecord,
    check_metadata,
    delete_user,
    normalize_email,
    update_user,
    user_by_email,
    user_by_id,
)
from alyx_server.errors import FieldIssue, Forbidden, Unauthorized, ValidationError

__all__ = [
    "ADMIN_ONLY_FIELDS",
    "account_user",
    "change_password",
    "delete_account",
    "request_reset",
    "request_verification",
    "reset_password",
    "update_profile",
    "verify_email",
]

ADMIN_ONLY_FIELDS = frozenset({"role", "app_metadata", "verified", "disabled"})


def account_user(auth: AuthContext | None) -> UserRecord:
    """The account of a signed-in user, or 401 UNAUTHORIZED (anonymous, or a token principal)."""
    if auth is None:
        raise Unauthorized("sign in first: send `Authorization: Bearer <access token>`")
    if auth.user is None:
        raise Forbidden("admin and deploy tokens have no account of their own")
    return auth.user


async def update_profile(svc: AuthService, auth: AuthContext | None, body: Mapping[str, Any]) -> UserRecord:
    """Replace the caller's `metadata`; see the module docstring for what is refused."""
    user = account_user(auth)
    refused = sorted(ADMIN_ONLY_FIELDS.intersection(body))
    if refused:
        raise Forbidden(f"only an administrator can change {', '.join(refused)}")
    unknown = sorted(set(body) - {"metadata"})
    if unknown:
        message = f"unknown field {unknown[0]!r}: PATCH /api/auth/me accepts only metadata"
        raise ValidationError(message, [FieldIssue(k, "unknown", message) for k in unknown])
    if "metadata" not in body:
        return user
    meta = check_metadata(body["metadata"], "metadata")
    now = svc.stamp()
    updated = await svc.db.write(lambda conn: update_user(conn, user.id, {"metadata": meta}, now=now))
    return _existing(updated)


async def _check_own_password(
    svc: AuthService, user: UserRecord, password: object, client: Client, field: str
) -> None:
    await svc.login_limit.hit(f"ip:{client.ip}", f"email:{user.email}")
    if not await svc.hasher.verify(password, user.password_hash):
        message = f"{field} is wrong"
        raise Unauthorized(
            message,
            code="INVALID_CREDENTIALS",
            details=[{"field": field, "code": "invalid", "message": message}],
        )


async def change_password(
    svc: AuthService, auth: AuthContext | None, current: object, new: object, client: Client
) -> None:
    """Set a new password; every session but the caller's is revoked."""
    user = account_user(auth)
    encoded = check_password_policy(new, svc.settings.password, "new_password")
    await _check_own_password(svc, user, current, client, "current_password")
    password_hash = await svc.hasher.hash(encoded)
    now, keep = svc.stamp(), auth.session_id if auth else None

    def write(conn: sqlite3.Connection) -> None:
        update_user(conn, user.id, {"password_hash": password_hash}, now=now)
        revoke_user_sessions(conn, user.id, now, keep_family=keep)

    await svc.db.write(write)


async def delete_account(
    svc: AuthService,
    auth: AuthContext | None,
    password: object,
    client: Client,
    *,
    code: object = None,
    code_verifier: object = None,
) -> None:
    """Delete the caller's account (never the last admin) after checking the password, or
    the one-time code of a fresh OAuth sign-in to this account: an account without a
    password proves its holder is present by signing in at the provider again, so a
    stolen access token alone cannot delete it."""
    user = account_user(auth)
    now = svc.stamp()
    if code is None:
        if user.password_hash is None:
            raise Forbidden(
                "this account has no password: sign in again with its provider and send "
                '{"code": ...} with the one-time code that sign-in returns, within 60 seconds',
                code="REAUTHENTICATION_REQUIRED",
            )
        await _check_own_password(svc, user, password, client, "password")

    def write(conn: sqlite3.Connection) -> None:
        if code is not None and redeem_exchange_code(conn, code, code_verifier, now=now) != user.id:
            raise Unauthorized(
                "this sign-in code belongs to another account; sign in again as this account",
                code="INVALID_TOKEN",
            )
        keep_an_admin(conn, user.id, "delete", {})
        delete_user(conn, user.id)

    await svc.db.write(write)


async def request_verification(
    svc: AuthService, auth: AuthContext | None, email: object, client: Client
) -> None:
    """Email a verification code to the caller, or to `email` when anonymous (202 either way).

    Without an `email`, the request is about the caller's own account: an anonymous
    caller gets a 401 and an admin token (which has no account) a 403, never a 400, as the
    body itself is optional. An `email` that is sent is checked, whoever the caller."""
    address = None if email is None else normalize_email(email)
    if auth is not None and auth.user is not None:
        user = auth.user
        await svc.reset_limit.hit(f"ip:{client.ip}", f"email:{user.email}")
        if not user.verified:
            svc.spawn(svc.send_one_time(user, "verify"), "verification email")
        return
    if address is None:
        if auth is None:
            raise Unauthorized('sign in to verify your own address, or send {"email": "..."}')
        raise Forbidden('an admin token has no address of its own: send {"email": "..."}')
    await svc.reset_limit.hit(f"ip:{client.ip}", f"email:{address}")
    svc.spawn(_send_if_account(svc, address, "verify"), "verification email")


async def request_reset(svc: AuthService, email: object, client: Client) -> None:
    """Email a reset code when `email` has an account; the answer is the same when not."""
    address = normalize_email(email)
    await svc.reset_limit.hit(f"ip:{client.ip}", f"email:{address}")
    svc.spawn(_send_if_account(svc, address, "reset"), "password reset email")


async def _send_if_account(svc: AuthService, address: str, kind: OneTimeKind) -> None:
    user = svc.db.read_now(lambda conn: user_by_email(conn, address))
    if user is None or user.disabled or (kind == "verify" and user.verified):
        return
    await svc.send_one_time(user, kind)


async def verify_email(svc: AuthService, token: object) -> UserRecord:
    """Mark the account of a verification code verified; the code works once."""
    token_hash, now = hash_secret(opaque_token(token, "token")), svc.stamp()

    def write(conn: sqlite3.Connection) -> UserRecord | None:
        user_id = redeem_one_time(conn, token_hash=token_hash, kind="verify", now=now)
        return update_user(conn, user_id, {"verified": True}, now=now)

    return _existing(await svc.db.write(write))


async def reset_password(svc: AuthService, token: object, new_password: object) -> None:
    """Set a new password with a reset code; every session of the account is revoked."""
    token_hash = hash_secret(opaque_token(token, "token"))
    encoded = check_password_policy(new_password, svc.settings.password, "new_password")
    now = svc.stamp()
    # Checked before the (slow) hash, so that guessing codes costs the server nothing.
    svc.db.read_now(lambda conn: check_one_time(conn, token_hash=token_hash, kind="reset", now=now))
    password_hash = await svc.hasher.hash(encoded)
    now = svc.stamp()

    def write(conn: sqlite3.Connection) -> None:
        user_id = redeem_one_time(conn, token_hash=token_hash, kind="reset", now=now)
        user = user_by_id(conn, user_id)
        if user is None or user.disabled:
            raise account_disabled()
        update_user(conn, user_id, {"password_hash": password_hash, "verified": True}, now=now)
        revoke_user_sessions(conn, user_id, now)

    await svc.db.write(write)


def _existing(user: UserRecord | None) -> UserRecord:
    if user is None:
        raise Unauthorized("the account was deleted", code="SESSION_REVOKED")
    return user
