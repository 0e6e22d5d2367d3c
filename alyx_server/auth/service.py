"""`AuthService`: accounts and sessions for one application, with everything they need.

It holds the password hasher, the token signer, the per-process cache, the rate
limiters and the mailer, and offers the operations of SPEC §8 as plain async methods
(no web types): the HTTP routes parse a request, call one method and render its
result. Self-service (`account.py`) and the admin API (`admin_users.py`) build on it.

`authenticate(token)` turns a bearer token into an `AuthContext`. It is synchronous and,
once the account and session family are cached, runs no query: a JWT check and two
dictionary look-ups. The database comes from a provider (`Runtime.ready_db` in the
application), so the service can be built before the database is open.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from alyx_server.auth.admin_tokens import TOKEN_PREFIX, TokenRecord, token_for_secret
from alyx_server.auth.cache import AuthCache
from alyx_server.auth.context import AuthContext, token_principal
from alyx_server.auth.mailer import Mailer, mailer_for
from alyx_server.auth.onetime import OneTimeKind, issue_one_time
from alyx_server.auth.passwords import (
    MAX_PASSWORD_BYTES,
    PasswordHasher,
    check_password_policy,
    password_error,
)
from alyx_server.auth.ratelimit import RateLimiter
from alyx_server.auth.sessions import (
    Refresh,
    SessionRow,
    family_of_token,
    open_session,
    revoke_family,
    rotate_session,
)
from alyx_server.auth.tokens import (
    AccessClaims,
    TokenSigner,
    hash_secret,
    invalid_token,
    new_refresh_token,
    new_secret,
    refresh_token_key,
    token_expired,
)
from alyx_server.auth.users import (
    UserRecord,
    check_metadata,
    insert_user,
    normalize_email,
    user_by_email,
)
from alyx_server.config import AuthSettings
from alyx_server.db import Database
from alyx_server.errors import Conflict, Forbidden, Unauthorized
from alyx_server.tools.timestamps import Clock, format_timestamp, parse_timestamp

__all__ = [
    "RESET_TTL",
    "VERIFY_TTL",
    "AuthService",
    "Client",
    "Tokens",
    "account_disabled",
    "opaque_token",
    "session_revoked",
]

log = logging.getLogger("alyx.auth")

VERIFY_TTL = 24 * 3600.0
"""How long an email verification token works."""
RESET_TTL = 3600.0
"""How long a password reset token works."""
MAX_OPAQUE_TOKEN = 256
"""Longest refresh, verification or reset token looked at; longer ones are refused unread."""


@dataclass(frozen=True, slots=True)
class Client:
    """Where a request came from, as stored with a session."""

    ip: str | None = None
    user_agent: str | None = None


@dataclass(frozen=True, slots=True)
class Tokens:
    """The `tokens` object of SPEC §8."""

    access_token: str
    refresh_token: str
    expires_at: str

    def to_dict(self) -> dict[str, str]:
        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "expires_at": self.expires_at,
            "token_type": "Bearer",
        }


def account_disabled() -> Forbidden:
    return Forbidden("this account is disabled; contact the administrator", code="ACCOUNT_DISABLED")


def session_revoked(message: str = "this session was logged out or revoked; log in again") -> Unauthorized:
    return Unauthorized(message, code="SESSION_REVOKED")


def opaque_token(value: object, field: str) -> str:
    """A refresh, verification or reset token from a request body, or 401 INVALID_TOKEN."""
    if not isinstance(value, str) or not value or len(value) > MAX_OPAQUE_TOKEN:
        raise invalid_token(f"{field} must be the token string the server issued")
    return value


class AuthService:
    """See the module docstring."""

    def __init__(
        self,
        settings: AuthSettings,
        *,
        clock: Clock,
        database: Callable[[], Database],
        mailer: Mailer | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self._database = database
        self.mailer = mailer if mailer is not None else mailer_for(settings.smtp)
        self.hasher = PasswordHasher(settings.bcrypt_cost)
        self.signer = TokenSigner(
            settings.jwt.secret, issuer=settings.jwt.issuer, access_ttl=settings.jwt.access_ttl, clock=clock
        )
        limits = settings.rate_limit
        self.login_limit = RateLimiter(limits.login, clock, "login attempts", name="login", database=database)
        self.register_limit = RateLimiter(
            limits.register, clock, "registrations", name="register", database=database
        )
        self.reset_limit = RateLimiter(limits.reset, clock, "email requests", name="reset", database=database)
        self._cache: AuthCache | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # -- plumbing ---------------------------------------------------------------------------
    @property
    def db(self) -> Database:
        return self._database()

    @property
    def cache(self) -> AuthCache:
        """The cache of the open database (a new one when the database was reopened)."""
        db = self._database()
        cache = self._cache
        if cache is None or cache.db is not db:
            if cache is not None:
                cache.close()
            cache = self._cache = AuthCache(db)
        return cache

    def now(self) -> datetime:
        return self.clock.now()

    def stamp(self, delta: float = 0.0) -> str:
        """The clock's time (plus `delta` seconds) in the storage format."""
        return format_timestamp(self.clock.now() + timedelta(seconds=delta))

    def spawn(self, work: Coroutine[Any, Any, None], what: str) -> None:
        """Run `work` in the background (emails), logging its failure; `close` awaits it."""

        async def guarded() -> None:
            try:
                await work
            except Exception:
                log.exception("%s failed", what)

        task = asyncio.get_running_loop().create_task(guarded(), name=f"alyx-auth-{what}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait for the background work in progress (emails being sent)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        """Finish background work, stop the hashing threads, drop the cache."""
        await self.drain()
        await asyncio.to_thread(self.hasher.close)
        if self._cache is not None:
            self._cache.close()
            self._cache = None

    # -- tokens --------------------------------------------------------------------------------
    def authenticate_header(self, header: str) -> AuthContext:
        """The caller of an `Authorization` header value, or 401 INVALID_TOKEN and friends."""
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise invalid_token("send the token as `Authorization: Bearer <token>`")
        return self.authenticate(token)

    def authenticate(self, token: str) -> AuthContext:
        """The caller of an access, admin or deploy token; see the module docstring."""
        if not token.isascii():
            # Tokens are ASCII; a header of raw non-UTF-8 bytes arrives with surrogate
            # escapes that the JWT library cannot even encode.
            raise invalid_token("the token is invalid: tokens are ASCII text, and this one is not")
        if token.startswith(TOKEN_PREFIX):
            return self._token_principal(token)
        return self._principal(self.signer.check(token))

    def recheck(self, token: str) -> AuthContext:
        """The caller of a token accepted earlier, as of now: the checks of `authenticate`
        (revoked session, disabled or deleted account, revoked admin token, new role)
        except an access token's expiry, which a long-lived holder (an open realtime
        connection) enforces itself."""
        if token.startswith(TOKEN_PREFIX):
            return self._token_principal(token)
        return self._principal(self.signer.signed_claims(token))

    def expiry(self, token: str) -> float | None:
        """When the access of a valid token ends (POSIX seconds), None when never."""
        if not token.startswith(TOKEN_PREFIX):
            return float(self.signer.check(token).expires)
        record = self._token_record(token)
        return None if record.expires_at is None else parse_timestamp(record.expires_at).timestamp()

    def _token_record(self, token: str) -> TokenRecord:
        now = self.stamp()
        return self.db.read_now(lambda conn: token_for_secret(conn, token, now))

    def _token_principal(self, token: str) -> AuthContext:
        record = self._token_record(token)
        return token_principal(record.id, record.name, record.kind, frozenset(record.permissions))

    def _principal(self, claims: AccessClaims) -> AuthContext:
        cache = self.cache
        user = cache.user(claims.user_id)
        if user is None:
            raise session_revoked("the account of this token was deleted")
        if user.disabled:
            raise account_disabled()
        family = cache.family(claims.session_id)
        if family.user_id != user.id:
            raise session_revoked()
        return cache.context(user, claims.session_id)

    def issue(self, user: UserRecord, session: SessionRow, refresh_token: str) -> Tokens:
        access, expires = self.signer.issue(
            user_id=user.id,
            session_id=session.family_id,
            email=user.email,
            role=user.role,
            verified=user.verified,
        )
        return Tokens(access, refresh_token, format_timestamp(expires))

    async def open_session(self, user: UserRecord, client: Client) -> Tokens:
        """A new session for `user` (a sign-in that checked its credentials elsewhere)."""
        return await self._open_session(user, client)

    async def _open_session(self, user: UserRecord, client: Client) -> Tokens:
        secret = new_refresh_token()
        token_hash, now, expires = (
            refresh_token_key(secret),
            self.stamp(),
            self.stamp(self.settings.jwt.refresh_ttl),
        )
        session = await self.db.write(
            lambda conn: open_session(
                conn, user_id=user.id, token_hash=token_hash, expires_at=expires, now=now,
                user_agent=client.user_agent, ip=client.ip,
            )
        )  # fmt: skip
        return self.issue(user, session, secret)

    async def send_one_time(self, user: UserRecord, kind: OneTimeKind) -> None:
        """Store a new verification or reset token for `user` and email it."""
        secret = new_secret()
        ttl = VERIFY_TTL if kind == "verify" else RESET_TTL
        token_hash, now, expires = hash_secret(secret), self.stamp(), self.stamp(ttl)
        await self.db.write(
            lambda conn: issue_one_time(
                conn, user_id=user.id, kind=kind, token_hash=token_hash, expires_at=expires, now=now
            )
        )
        subject, body = _one_time_email(kind, secret, self.settings.jwt.issuer, ttl)
        await self.mailer.send(user.email, subject, body)

    # -- sign-up, sign-in, refresh, sign-out ----------------------------------------------------
    async def register(
        self, email: object, password: object, metadata: object, client: Client
    ) -> tuple[UserRecord, Tokens | None]:
        """Create an account and (unless verification is required) its first session."""
        if not self.settings.allow_registration:
            raise Forbidden("registration is closed on this server", code="REGISTRATION_CLOSED")
        address = normalize_email(email)
        encoded = check_password_policy(password, self.settings.password)
        meta = check_metadata({} if metadata is None else metadata, "metadata")
        await self.register_limit.hit(f"ip:{client.ip}")
        db = self.db
        if db.read_now(lambda conn: user_by_email(conn, address)) is not None:
            raise _user_exists()
        password_hash = await self.hasher.hash(encoded)
        now = self.stamp()
        user = await db.write(
            lambda conn: insert_user(conn, email=address, password_hash=password_hash, now=now, metadata=meta)
        )
        if self.settings.require_verification:
            self.spawn(self.send_one_time(user, "verify"), "verification email")
            return user, None
        return user, await self._open_session(user, client)

    async def login(self, email: object, password: object, client: Client) -> tuple[UserRecord, Tokens]:
        """Check the credentials and open a session; failures never tell which part was wrong."""
        address = normalize_email(email)
        if isinstance(password, str) and len(password.encode("utf-8", "surrogatepass")) > MAX_PASSWORD_BYTES:
            raise password_error("PASSWORD_TOO_LONG", f"password is longer than {MAX_PASSWORD_BYTES} bytes")
        await self.login_limit.hit(f"ip:{client.ip}", f"email:{address}")
        user = self.db.read_now(lambda conn: user_by_email(conn, address))
        if not await self.hasher.verify(password, user.password_hash if user else None) or user is None:
            raise Unauthorized("the email or the password is wrong", code="INVALID_CREDENTIALS")
        if user.disabled:
            raise account_disabled()
        if self.settings.require_verification and not user.verified:
            raise Forbidden(
                "verify your email address first (POST /api/auth/verify/request sends a new code)",
                code="EMAIL_NOT_VERIFIED",
            )
        return user, await self._open_session(user, client)

    async def refresh(self, refresh_token: object, client: Client) -> tuple[UserRecord, Tokens]:
        """Rotate a refresh token; a retired one revokes its whole family (TOKEN_REUSED).

        The write touches only the session rows; the account comes from the cache, so a
        refresh costs one small transaction and, usually, no read of the account.
        """
        presented = opaque_token(refresh_token, "refresh_token")
        secret = new_refresh_token()
        old_hash, new_hash = refresh_token_key(presented), refresh_token_key(secret)
        now, expires = self.stamp(), self.stamp(self.settings.jwt.refresh_ttl)
        outcome = await self.db.write(
            lambda conn: rotate_session(
                conn, token_hash=old_hash, new_hash=new_hash, now=now, expires_at=expires,
                user_agent=client.user_agent, ip=client.ip,
            )
        )  # fmt: skip
        user = self.cache.user(outcome.user_id) if outcome.user_id is not None else None
        if user is not None and user.disabled:
            raise account_disabled()
        if outcome.kind is Refresh.ROTATED and outcome.session is not None and user is not None:
            return user, self.issue(user, outcome.session, secret)
        raise _refresh_error(outcome.kind)

    async def logout(self, refresh_token: object) -> None:
        """Revoke the session family of a refresh token (live or already rotated)."""
        presented = opaque_token(refresh_token, "refresh_token")
        token_hash, now = refresh_token_key(presented), self.stamp()

        def revoke(conn: Any) -> None:
            found = family_of_token(conn, token_hash)
            if found is None:
                raise invalid_token("unknown refresh token")
            revoke_family(conn, found[0], now)

        await self.db.write(revoke)


def _user_exists() -> Exception:
    return Conflict("an account with this email already exists", code="USER_EXISTS", field="email")


def _refresh_error(kind: Refresh) -> Exception:
    if kind is Refresh.REUSED:
        return Unauthorized(
            "this refresh token was already used; the session has been revoked everywhere, log in again",
            code="TOKEN_REUSED",
        )
    if kind is Refresh.EXPIRED:
        return token_expired("the refresh token has expired; log in again")
    if kind is Refresh.REVOKED:
        return session_revoked()
    return invalid_token("unknown refresh token")


def _one_time_email(kind: OneTimeKind, secret: str, issuer: str, ttl: float) -> tuple[str, str]:
    hours = ttl / 3600
    lasting = f"{hours:g} hour" + ("" if hours == 1 else "s")
    if kind == "verify":
        return (
            f"Verify your email address ({issuer})",
            f"Your email verification code:\n\n    {secret}\n\n"
            f"It works once, for {lasting}. Apps send it with POST /api/auth/verify "
            '{"token": "<code>"}.\n\nIf you did not create an account, ignore this email.\n',
        )
    return (
        f"Reset your password ({issuer})",
        f"Your password reset code:\n\n    {secret}\n\n"
        f"It works once, for {lasting}. Apps send it with POST /api/auth/reset "
        '{"token": "<code>", "new_password": "..."}.\n\n'
        "If you did not ask to reset your password, ignore this email: nothing changes.\n",
    )
