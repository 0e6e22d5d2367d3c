"""`OAuthService`: sign-in with OAuth2 / OpenID Connect providers, and linked identities.

    start     /api/auth/oauth/<p>/start?redirect=...   the app's `redirect` must be one of
              `auth.oauth.allowed_redirects`; a state, a PKCE verifier and a nonce are stored
              (oauth_flows.py) with the hash of a browser cookie, and the app's `code_challenge`
              when it sends one; the browser goes to the provider
    callback  /api/auth/oauth/<p>/callback              the state is used up (once, any process),
              the cookie must match, the code is exchanged, the user resolved (below); the
              browser goes back to the app with `?code=<one-time exchange code>` (or `?error=`)
    exchange  POST /api/auth/oauth/exchange {code, code_verifier}   the exchange code is
              used up for a session: the usual {user, tokens}. Tokens never travel in a URL.
              A sign-in started with a code_challenge needs its verifier here (the generated
              clients keep one), so the code alone, copied from the address bar, is useless.

Accounts. An identity (provider, subject) already known signs its account in. A new one
links to an existing account with the same email only when the provider says the email is
verified; an unverified one never takes over an account (OAUTH_EMAIL_UNVERIFIED), and
without an account it signs up an unverified account or is refused
(`auth.oauth.unverified_email`). A signed-in account links another provider with a
one-time link ticket (`link_url`), and unlinks one unless it is its last way to sign in.

The providers' protocol code (oauth_providers.py: Authlib and joserfc, with cryptography)
is imported only when `auth.oauth.providers` lists a provider.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from alyx_server.auth.account import account_user
from alyx_server.auth.context import AuthContext
from alyx_server.auth.identities import (
    IdentityRecord,
    identities_of,
    identity_by_subject,
    insert_identity,
    remove_identity,
    touch_identity,
)
from alyx_server.auth.oauth_flows import (
    FlowRow,
    check_app_challenge,
    insert_flow,
    prune_flows,
    redeem_exchange_code,
    redeem_flow,
)
from alyx_server.auth.service import AuthService, Client, Tokens, account_disabled
from alyx_server.auth.tokens import hash_secret, invalid_token
from alyx_server.auth.users import UserRecord, insert_user, normalize_email, user_by_email, user_by_id
from alyx_server.config import OAuthSettings
from alyx_server.config.oauth import OAuthProviderConfig
from alyx_server.errors import AlyxError, ConfigError, Conflict, Forbidden, NotFound, ValidationError

if TYPE_CHECKING:
    from alyx_server.auth.oauth_providers import ProviderClient, ProviderUser

__all__ = ["EXCHANGE_TTL", "FLOW_TTL", "OAuthService", "StateRefused"]

log = logging.getLogger("alyx.auth.oauth")

FLOW_TTL = 600.0
"""How long a started sign-in (its state) or a link ticket works."""
EXCHANGE_TTL = 60.0
"""How long the one-time exchange code the app receives works."""


class StateRefused(AlyxError):
    """The callback's state is missing, unknown, used, expired or not this browser's: there
    is no trusted app to return to, so the callback answers with the error itself."""

    status = 400
    code = "OAUTH_STATE_INVALID"


@dataclass(frozen=True, slots=True)
class Started:
    authorize_url: str
    browser_secret: str


class OAuthService:
    """See the module docstring."""

    def __init__(
        self, auth: AuthService, settings: OAuthSettings, providers: tuple[OAuthProviderConfig, ...]
    ) -> None:
        self.auth = auth
        self.settings = settings
        if providers:
            from alyx_server.auth.oauth_providers import ProviderClient
        self.providers = {
            p.name: ProviderClient(p, timeout=settings.timeout, clock=auth.clock) for p in providers
        }

    async def check_providers(self, *, strict: bool) -> None:
        """Fetch every OpenID provider's discovery document now; under `strict` (alyx serve)
        one that cannot be read stops the start with a ConfigError."""
        if not self.providers:
            return
        from alyx_server.auth.oauth_providers import ProviderError

        for client in self.providers.values():
            try:
                await client.metadata()
            except ProviderError as e:
                if strict:
                    raise ConfigError(
                        f"auth.oauth.providers.{client.name}: {e}",
                        client.config.location,
                        hint="check the issuer URL and that this server can reach it",
                    ) from e
                log.warning("OAuth provider %s is not reachable yet: %s", client.name, e)

    def listing(self) -> list[dict[str, str]]:
        return [
            {"name": name, "label": c.config.label, "start_url": f"/api/auth/oauth/{name}/start"}
            for name, c in self.providers.items()
        ]

    def provider(self, name: str) -> ProviderClient:
        found = self.providers.get(name)
        if found is None:
            known = ", ".join(self.providers) or "none is configured (auth.oauth.providers)"
            raise NotFound(
                f"unknown sign-in provider {name!r}; providers: {known}", code="OAUTH_UNKNOWN_PROVIDER"
            )
        return found

    def check_redirect(self, redirect: object) -> str:
        """`redirect` when it is one of `auth.oauth.allowed_redirects` (same scheme, host,
        port and path; a query may be added), else 400 OAUTH_REDIRECT_NOT_ALLOWED."""
        if not isinstance(redirect, str) or not redirect:
            raise ValidationError(
                "redirect is required: the app URL to return to after sign-in",
                code="OAUTH_REDIRECT_NOT_ALLOWED",
            )
        parts = urlsplit(redirect)
        bare = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
        if parts.fragment or "\\" in redirect or bare not in self.settings.allowed_redirects:
            raise ValidationError(
                f"redirect {redirect[:200]!r} is not one of auth.oauth.allowed_redirects; "
                "add the app's URL there",
                code="OAUTH_REDIRECT_NOT_ALLOWED",
            )
        return redirect

    def callback_url(self, client: ProviderClient, request_origin: str) -> str:
        if client.config.redirect_url:
            return client.config.redirect_url
        base = (self.settings.public_url or request_origin).rstrip("/")
        return f"{base}/api/auth/oauth/{client.name}/callback"

    # -- start ------------------------------------------------------------------------------
    async def start(
        self,
        name: str,
        redirect: object,
        *,
        request_origin: str,
        link: object = None,
        code_challenge: object = None,
    ) -> Started:
        client = self.provider(name)
        target = self.check_redirect(redirect)
        app_challenge = check_app_challenge(code_challenge)
        user_id: str | None = None
        if link is not None:
            user_id = await self._redeem_link(name, link)
        state, nonce, verifier, browser = (secrets.token_urlsafe(32) for _ in range(4))
        callback = self.callback_url(client, request_origin)
        url = await client.authorization_url(
            callback_url=callback, state=state, nonce=nonce, verifier=verifier
        )
        now, expires = self.auth.stamp(), self.auth.stamp(FLOW_TTL)

        def store(conn: Any) -> None:
            prune_flows(conn, now=now)
            insert_flow(
                conn,
                kind="state",
                token_hash=hash_secret(state),
                provider=name,
                redirect=target,
                callback_url=callback,
                code_verifier=verifier,
                nonce=nonce,
                browser_hash=hash_secret(browser),
                user_id=user_id,
                expires_at=expires,
                now=now,
                app_challenge=app_challenge,
            )

        await self.auth.db.write(store)
        return Started(url, browser)

    async def _redeem_link(self, name: str, link: object) -> str:
        if not isinstance(link, str) or not link or len(link) > 256:
            raise invalid_token("link must be the ticket POST /api/auth/identities returned")
        now = self.auth.stamp()
        row = await self.auth.db.write(
            lambda conn: redeem_flow(conn, kind="link", token_hash=hash_secret(link), now=now)
        )
        if row is None or row.provider != name or row.user_id is None:
            raise invalid_token("this link ticket is invalid, expired or already used; ask for a new one")
        return row.user_id

    # -- callback -----------------------------------------------------------------------------
    async def callback(
        self, name: str, params: dict[str, str], *, browser_secret: str | None, client: Client
    ) -> str:
        """The URL the browser goes to next: the app's redirect with `code` (sign-in),
        `linked` (link) or `error` and `error_description`. StateRefused when the state
        cannot be trusted."""
        provider = self.provider(name)
        from alyx_server.auth.oauth_providers import ProviderError

        state = params.get("state")
        if not state:
            raise StateRefused("the provider's answer has no state; start the sign-in again")
        now = self.auth.stamp()
        flow = await self.auth.db.write(
            lambda conn: redeem_flow(conn, kind="state", token_hash=hash_secret(state), now=now)
        )
        if flow is None or flow.provider != name:
            raise StateRefused("this sign-in's state is unknown, expired or was already used; start again")
        if browser_secret is None or flow.browser_hash != hash_secret(browser_secret):
            raise StateRefused("this sign-in was started in another browser; start it again here")
        try:
            if "error" in params:
                detail = params.get("error_description") or params["error"]
                raise Forbidden(f"{name} did not sign you in: {detail[:300]}", code="OAUTH_DENIED")
            code = params.get("code")
            if not code:
                raise ProviderError(f"{name}'s answer has neither a code nor an error")
            who = await provider.sign_in(
                code=code,
                callback_url=flow.callback_url or "",
                verifier=flow.code_verifier or "",
                nonce=flow.nonce or "",
            )
            return await self._finish(name, flow, who)
        except AlyxError as e:
            log.info("OAuth sign-in with %s refused: %s", name, e)
            return _with_query(flow.redirect, {"error": e.code, "error_description": e.message})

    async def _finish(self, name: str, flow: FlowRow, who: ProviderUser) -> str:
        email: str | None = None
        if who.email:
            try:
                email = normalize_email(who.email)
            except ValidationError:
                email = None
        now = self.auth.stamp()
        exchange = secrets.token_urlsafe(32)
        expires = self.auth.stamp(EXCHANGE_TTL)
        linking = flow.user_id is not None

        def resolve(conn: Any) -> UserRecord:
            user = self._account(conn, name, flow.user_id, who, email, now)
            if user.disabled:
                raise account_disabled()
            if not linking:
                insert_flow(
                    conn,
                    kind="exchange",
                    token_hash=hash_secret(exchange),
                    provider=name,
                    redirect=flow.redirect,
                    user_id=user.id,
                    expires_at=expires,
                    now=now,
                    app_challenge=flow.app_challenge,
                )
            return user

        await self.auth.db.write(resolve)
        if linking:
            return _with_query(flow.redirect, {"linked": name})
        return _with_query(flow.redirect, {"code": exchange})

    def _account(
        self, conn: Any, name: str, link_to: str | None, who: ProviderUser, email: str | None, now: str
    ) -> UserRecord:
        identity = identity_by_subject(conn, name, who.subject)
        verified = who.email_verified and email is not None
        if identity is not None:
            if link_to is not None and identity.user_id != link_to:
                raise Conflict(
                    f"this {name} account is already linked to another account", code="IDENTITY_IN_USE"
                )
            touch_identity(conn, identity.id, email=email, email_verified=verified, now=now)
            user = user_by_id(conn, identity.user_id)
            assert user is not None  # the foreign key cascades deletions
            return user
        if link_to is not None:
            user = user_by_id(conn, link_to)
            if user is None:
                raise NotFound("the account to link to no longer exists", code="USER_NOT_FOUND")
            insert_identity(
                conn,
                provider=name,
                subject=who.subject,
                user_id=user.id,
                email=email,
                email_verified=verified,
                now=now,
            )
            return user
        if email is None:
            raise Forbidden(
                f"{name} gave no email address; allow access to it (the email scope) and try again",
                code="OAUTH_NO_EMAIL",
            )
        existing = user_by_email(conn, email)
        if existing is not None:
            if not verified:
                raise Forbidden(
                    f"an account with {email} exists, and {name} has not verified that this address is "
                    f"yours; sign in with your password, then link {name} from your account",
                    code="OAUTH_EMAIL_UNVERIFIED",
                )
            user = existing
        else:
            if not verified and self.settings.unverified_email == "refuse":
                raise Forbidden(
                    f"{name} has not verified your email address; verify it there and try again",
                    code="OAUTH_EMAIL_UNVERIFIED",
                )
            if not self.auth.settings.allow_registration:
                raise Forbidden("registration is closed on this server", code="REGISTRATION_CLOSED")
            user = insert_user(conn, email=email, password_hash=None, now=now, verified=verified)
        insert_identity(
            conn,
            provider=name,
            subject=who.subject,
            user_id=user.id,
            email=email,
            email_verified=verified,
            now=now,
        )
        return user

    # -- exchange ------------------------------------------------------------------------------
    async def exchange(self, code: object, verifier: object, client: Client) -> tuple[UserRecord, Tokens]:
        now = self.auth.stamp()

        def redeem(conn: Any) -> UserRecord | None:
            return user_by_id(conn, redeem_exchange_code(conn, code, verifier, now=now))

        user = await self.auth.db.write(redeem)
        if user is None:
            raise invalid_token("this sign-in code is invalid, expired or was already used; sign in again")
        if user.disabled:
            raise account_disabled()
        return user, await self.auth.open_session(user, client)

    # -- identities of a signed-in account ------------------------------------------------------
    async def identities(self, user_id: str) -> tuple[list[IdentityRecord], bool]:
        def read(conn: Any) -> tuple[list[IdentityRecord], bool]:
            user = user_by_id(conn, user_id)
            return identities_of(conn, user_id), bool(user and user.password_hash)

        return await self.auth.db.read(read)

    async def link_url(self, auth: AuthContext | None, name: object, redirect: object) -> str:
        """A one-time start URL that links `name` to the signed-in account."""
        user_id = _account_id(auth)
        if not isinstance(name, str):
            raise ValidationError("provider must be the name of a configured provider")
        self.provider(name)
        target = self.check_redirect(redirect)
        ticket, now, expires = secrets.token_urlsafe(32), self.auth.stamp(), self.auth.stamp(FLOW_TTL)
        await self.auth.db.write(
            lambda conn: insert_flow(
                conn,
                kind="link",
                token_hash=hash_secret(ticket),
                provider=name,
                redirect=target,
                user_id=user_id,
                expires_at=expires,
                now=now,
            )
        )
        return f"/api/auth/oauth/{name}/start?" + urlencode({"redirect": target, "link": ticket})

    async def unlink(self, user_id: str, identity_id: str) -> IdentityRecord:
        return await self.auth.db.write(lambda conn: remove_identity(conn, user_id, identity_id))


def _account_id(auth: AuthContext | None) -> str:
    return account_user(auth).id


def _with_query(url: str, params: dict[str, str]) -> str:
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, urlencode(params)) if q)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))
