"""The provider side of OAuth sign-in: endpoints, the authorization URL, the code
exchange, and who the user is (a verified ID token, or the provider's user API).

Protocol work is Authlib's: the authorization URI and token request (`authlib.oauth2`),
PKCE S256 (`authlib.oauth2.rfc7636`), the ID token's claims (`authlib.oidc.core.CodeIDToken`:
iss, aud, exp, iat, nonce, azp) over a signature checked by joserfc (Authlib's JOSE
library) against the provider's JWKS. Only asymmetric algorithms are accepted, so
neither `alg: none` nor an HS256 token made with the client secret passes. A key id not
in the cached JWKS fetches the JWKS again once (the provider rotated its keys).

HTTP goes through aiohttp with `auth.oauth.timeout` for every call; a provider that is
slow, unreachable or answers with something unexpected is a `ProviderError` (502
OAUTH_PROVIDER_ERROR) naming the provider and what went wrong. Discovery documents and
key sets are cached per process (public data; each process fetches its own).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri, prepare_token_request
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import ECKey, KeySet
from joserfc.jws import JWSRegistry

from alyx_server.config.oauth import OAuthProviderConfig
from alyx_server.errors import AlyxError, Unauthorized
from alyx_server.tools.timestamps import Clock

__all__ = ["ProviderClient", "ProviderError", "ProviderUser", "invalid_id_token"]

ASYMMETRIC = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
"""ID token algorithms accepted; never `none` or an HMAC keyed with the client secret."""
LEEWAY = 60
"""Seconds of clock difference tolerated on exp and iat."""
_MAX_BODY = 1024 * 1024
_MULTI_TENANT = ("common", "organizations", "consumers")


class ProviderError(AlyxError):
    """A provider was slow, unreachable, refused, or answered with something unexpected."""

    status = 502
    code = "OAUTH_PROVIDER_ERROR"


def invalid_id_token(provider: str, why: str) -> Unauthorized:
    return Unauthorized(f"the ID token from {provider} was refused: {why}", code="OAUTH_INVALID_ID_TOKEN")


@dataclass(frozen=True, slots=True)
class ProviderUser:
    """Who signed in, as the provider says."""

    subject: str
    email: str | None
    email_verified: bool
    name: str | None = None


def _truthy(value: object) -> bool:
    # Apple sends "true" / "false" strings; others booleans.
    return value is True or (isinstance(value, str) and value.lower() == "true")


class ProviderClient:
    """One configured provider: see the module docstring."""

    def __init__(self, config: OAuthProviderConfig, *, timeout: float, clock: Clock) -> None:
        self.config = config
        self.timeout = timeout
        self.clock = clock
        self._metadata: dict[str, Any] | None = None
        self._keys: KeySet | None = None
        self._lock = asyncio.Lock()

    @property
    def name(self) -> str:
        return self.config.name

    # -- HTTP -------------------------------------------------------------------------------
    async def _request(self, method: str, url: str, what: str, **kwargs: Any) -> Any:
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        headers = {"Accept": "application/json", "User-Agent": "alyx", **kwargs.pop("headers", {})}
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.request(method, url, headers=headers, **kwargs) as response,
            ):
                body = await response.content.read(_MAX_BODY)
                status = response.status
        except TimeoutError as e:
            raise ProviderError(
                f"{self.name} did not answer {what} within {self.timeout:g} s; try again"
            ) from e
        except aiohttp.ClientError as e:
            raise ProviderError(f"{self.name} could not be reached for {what} ({url}): {e}") from e
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as e:
            raise ProviderError(
                f"{self.name} answered {what} with HTTP {status} and a body that is not JSON"
            ) from e
        if status >= 400 or not isinstance(data, dict):
            if isinstance(data, dict) and "error" in data:
                detail = data.get("error_description") or data["error"]
                raise ProviderError(f"{self.name} refused {what}: {data['error']} ({detail})")
            raise ProviderError(f"{self.name} answered {what} with HTTP {status} and no usable JSON object")
        return data

    async def metadata(self) -> dict[str, Any]:
        """The endpoints: the discovery document of an OpenID provider (fetched once), or
        GitHub's and Discord's (`authorize_url`, `token_url`, `userinfo_url`); GitHub's
        email list is `<userinfo_url>/emails`."""
        if self._metadata is not None:
            return self._metadata
        config = self.config
        if config.endpoints is not None:
            authorize, token, user = config.endpoints
            self._metadata = {
                "authorization_endpoint": authorize,
                "token_endpoint": token,
                "userinfo_endpoint": user,
            }
            return self._metadata
        url = f"{config.issuer}/.well-known/openid-configuration"
        found = await self._request("GET", url, "the discovery document")
        for field in ("authorization_endpoint", "token_endpoint", "jwks_uri", "issuer"):
            if not isinstance(found.get(field), str):
                raise ProviderError(f"{self.name}'s discovery document ({url}) has no {field}")
        self._metadata = dict(found)
        return self._metadata

    async def _key_set(self, refresh: bool) -> KeySet:
        async with self._lock:
            if self._keys is None or refresh:
                uri = (await self.metadata())["jwks_uri"]
                data = await self._request("GET", uri, "the signing keys (JWKS)")
                try:
                    self._keys = KeySet.import_key_set(data)
                except (JoseError, ValueError, KeyError, TypeError) as e:
                    raise ProviderError(
                        f"{self.name}'s signing keys ({uri}) are not a valid JWKS: {e}"
                    ) from e
            return self._keys

    # -- the flow -----------------------------------------------------------------------------
    async def authorization_url(self, *, callback_url: str, state: str, nonce: str, verifier: str) -> str:
        meta = await self.metadata()
        extra: dict[str, str] = {
            "code_challenge": create_s256_code_challenge(verifier),
            "code_challenge_method": "S256",
        }
        if self.config.is_oidc:
            extra["nonce"] = nonce
        if self.config.preset == "apple" and {"name", "email"} & set(self.config.scopes):
            extra["response_mode"] = "form_post"  # Apple's rule when name or email is asked
        uri: str = prepare_grant_uri(
            meta["authorization_endpoint"],
            self.config.client_id,
            "code",
            redirect_uri=callback_url,
            scope=" ".join(self.config.scopes),
            state=state,
            **extra,
        )
        return uri

    async def sign_in(self, *, code: str, callback_url: str, verifier: str, nonce: str) -> ProviderUser:
        """Exchange the authorization code and say who signed in."""
        meta = await self.metadata()
        tokens = await self._exchange(meta["token_endpoint"], code, callback_url, verifier)
        access = tokens.get("access_token")
        if self.config.is_oidc:
            id_token = tokens.get("id_token")
            if not isinstance(id_token, str):
                raise ProviderError(
                    f"{self.name}'s token response has no id_token (is openid in the scopes?)"
                )
            return await self._verify_id_token(id_token, nonce, access if isinstance(access, str) else None)
        if not isinstance(access, str):
            raise ProviderError(f"{self.name}'s token response has no access_token")
        return await self._api_user(access)

    async def _exchange(self, url: str, code: str, callback_url: str, verifier: str) -> dict[str, Any]:
        config = self.config
        secret = self._apple_secret() if config.preset == "apple" else config.client_secret
        body: str = prepare_token_request(
            "authorization_code",
            code=code,
            redirect_uri=callback_url,
            code_verifier=verifier,
            client_id=config.client_id,
            client_secret=secret,
        )
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        found: dict[str, Any] = await self._request(
            "POST", url, "the code exchange", data=body, headers=headers
        )
        return found

    def _apple_secret(self) -> str:
        config = self.config
        assert config.private_key_file is not None
        key = ECKey.import_key(config.private_key_file.read_bytes())
        now = int(self.clock.now().timestamp())
        claims = {
            "iss": config.team_id,
            "iat": now,
            "exp": now + 300,
            "aud": "https://appleid.apple.com",
            "sub": config.client_id,
        }
        return jwt.encode({"alg": "ES256", "kid": config.key_id}, claims, key)

    async def _verify_id_token(self, id_token: str, nonce: str, access_token: str | None) -> ProviderUser:
        meta = await self.metadata()
        offered = meta.get("id_token_signing_alg_values_supported") or ["RS256"]
        algorithms = [alg for alg in offered if alg in ASYMMETRIC] or ["RS256"]
        registry = JWSRegistry(algorithms=algorithms)
        try:
            try:
                token = jwt.decode(id_token, await self._key_set(refresh=False), registry=registry)
            except InvalidKeyIdError:
                token = jwt.decode(id_token, await self._key_set(refresh=True), registry=registry)
        except (JoseError, ValueError) as e:
            raise invalid_id_token(self.name, f"its signature does not verify ({e})") from e
        claims = token.claims
        issuer = str(meta["issuer"])
        if self.config.preset == "microsoft" and (self.config.tenant or "common") in _MULTI_TENANT:
            issuer = issuer.replace("{tenantid}", str(claims.get("tid", "")))
        options: dict[str, Any] = {
            "iss": {"essential": True, "value": issuer},
            "aud": {"essential": True, "value": self.config.client_id},
        }
        params = {"nonce": nonce, "client_id": self.config.client_id}
        if access_token is not None:
            params["access_token"] = access_token
        try:
            CodeIDToken(claims, token.header, options, params).validate(
                now=int(self.clock.now().timestamp()), leeway=LEEWAY
            )
        except JoseError as e:
            raise invalid_id_token(self.name, str(e)) from e
        return ProviderUser(
            subject=str(claims["sub"]),
            email=claims.get("email") if isinstance(claims.get("email"), str) else None,
            email_verified=_truthy(claims.get("email_verified")),
            name=claims.get("name") if isinstance(claims.get("name"), str) else None,
        )

    async def _api_user(self, access_token: str) -> ProviderUser:
        meta = await self.metadata()
        auth = {"Authorization": f"Bearer {access_token}"}
        user = await self._request("GET", meta["userinfo_endpoint"], "the user", headers=auth)
        subject = user.get("id")
        if not isinstance(subject, (str, int)) or isinstance(subject, bool):
            raise ProviderError(f"{self.name}'s user has no id")
        name = user.get("name") or user.get("login") or user.get("username")
        if self.config.preset == "discord":
            email = user.get("email")
            return ProviderUser(
                str(subject),
                email if isinstance(email, str) else None,
                user.get("verified") is True,
                name if isinstance(name, str) else None,
            )
        # GitHub: the profile's email may be hidden or unverified; the emails API says which
        # address is primary and verified.
        emails = await self._request_list(f"{meta['userinfo_endpoint']}/emails", auth)
        primary = next((e for e in emails if isinstance(e, dict) and e.get("primary")), None)
        return ProviderUser(
            str(subject),
            str(primary["email"]) if primary and isinstance(primary.get("email"), str) else None,
            bool(primary and primary.get("verified") is True),
            name if isinstance(name, str) else None,
        )

    async def _request_list(self, url: str, headers: dict[str, str]) -> list[Any]:
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        started = time.monotonic()
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(
                    url, headers={"Accept": "application/json", "User-Agent": "alyx", **headers}
                ) as r,
            ):
                data = orjson.loads(await r.content.read(_MAX_BODY))
        except (TimeoutError, aiohttp.ClientError, orjson.JSONDecodeError) as e:
            waited = time.monotonic() - started
            raise ProviderError(
                f"{self.name}'s email list could not be read after {waited:.1f} s: {e}"
            ) from e
        return data if isinstance(data, list) else []
