"""A real OpenID provider on a loopback port, for the OAuth sign-in tests.

Built from Authlib's authorization server (the authorization code grant with PKCE S256
required, the OpenID Connect code extension that signs the ID token) on aiohttp, with
joserfc RS256 keys published at a JWKS endpoint. `rotate()` makes a new signing key (the
old one leaves the JWKS). An attack is staged with `tamper`: it rewrites the ID token the
token endpoint returns (claims, header, signing key); `slow` and `garbage` make the token
endpoint hang or answer with HTML. Presets are staged too: `check_secret` replaces the
client secret check (Apple's is a JWT the client signs), `discovery_issuer` is the issuer
the discovery document announces (Microsoft's multi-tenant `.../{tenantid}/v2.0`).

The person signing in is `user` (sub, email, email_verified): the authorization endpoint
approves at once and redirects back with a code, as a provider does after its login page.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from authlib.oauth2.rfc6749 import AuthorizationServer, ClientMixin, OAuth2Payload, OAuth2Request
from authlib.oauth2.rfc6749.grants import AuthorizationCodeGrant
from authlib.oauth2.rfc6749.models import AuthorizationCodeMixin
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core.grants import OpenIDCode
from joserfc import jwt
from joserfc.jwk import Key, KeySet, RSAKey

__all__ = ["CLIENT_ID", "CLIENT_SECRET", "OidcProvider", "Tamper", "unsigned"]

CLIENT_ID = "alyx-test-client"
CLIENT_SECRET = "s3cr3t-of-the-alyx-test-client-0123456789abcdef"
Tamper = Callable[[dict[str, Any], dict[str, Any]], tuple[dict[str, Any], dict[str, Any], Key | None]]
"""(claims, header) -> (claims, header, signing key; None keeps the provider's current key)."""


def unsigned(claims: dict[str, Any]) -> str:
    """An `alg: none` JWT (what an attacker sends; no library makes one)."""

    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


@dataclass
class _Client(ClientMixin):  # type: ignore[misc]
    client_id: str = CLIENT_ID
    client_secret: str = CLIENT_SECRET
    check_secret: Callable[[str], bool] | None = None

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        return None

    def get_allowed_scope(self, scope: str) -> str:
        return scope

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri.startswith("http://127.0.0.1:")

    def check_client_secret(self, client_secret: str) -> bool:
        if self.check_secret is not None:
            return self.check_secret(client_secret)
        return client_secret == self.client_secret

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "authorization_code"


@dataclass
class _Code(AuthorizationCodeMixin):  # type: ignore[misc]
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    nonce: str | None
    user: dict[str, Any]
    code_challenge: str | None
    code_challenge_method: str | None
    auth_time: int = field(default_factory=lambda: int(time.time()))

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> None:
        return None


class _Payload(OAuth2Payload):  # type: ignore[misc]
    def __init__(self, data: dict[str, str]) -> None:
        self._data = data

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> dict[str, list[str]]:
        return {k: [v] for k, v in self._data.items()}


class _Request(OAuth2Request):  # type: ignore[misc]
    """An aiohttp request as Authlib's server reads it (as its Flask integration does)."""

    def __init__(self, request: web.Request, data: dict[str, str]) -> None:
        super().__init__(request.method, str(request.url), headers=request.headers)
        self.payload = _Payload(data)
        self._args = dict(request.query)
        self._form = data if request.method == "POST" else {}

    @property
    def args(self) -> dict[str, str]:
        return self._args

    @property
    def form(self) -> dict[str, str]:
        return self._form


class OidcProvider:
    """See the module docstring. `start()` before the application; `url` is the issuer."""

    def __init__(self) -> None:
        self.keys: list[RSAKey] = [RSAKey.generate_key(2048, parameters={"kid": "key-1"})]
        self.user: dict[str, Any] = {"sub": "user-1", "email": "ada@example.com", "email_verified": True}
        self.tamper: Tamper | None = None
        self.slow = False
        self.garbage = False
        self.codes: dict[str, _Code] = {}
        self.jwks_fetches = 0
        self.check_secret: Callable[[str], bool] | None = None
        self.discovery_issuer: str | None = None
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._stopping = asyncio.Event()
        self.server = self._server()

    @property
    def key(self) -> RSAKey:
        return self.keys[-1]

    def rotate(self) -> None:
        """A new signing key; the old one leaves the JWKS."""
        self.keys = [RSAKey.generate_key(2048, parameters={"kid": f"key-{len(self.keys) + 1}"})]

    async def start(self, port: int) -> None:
        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", self._discovery)
        app.router.add_get("/jwks", self._jwks)
        app.router.add_get("/authorize", self._authorize)
        app.router.add_post("/token", self._token)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()

    # -- Authlib's server --------------------------------------------------------------------
    def _server(self) -> AuthorizationServer:
        provider = self

        class Server(AuthorizationServer):  # type: ignore[misc]
            def query_client(self, client_id: str) -> _Client | None:
                return _Client(check_secret=provider.check_secret) if client_id == CLIENT_ID else None

            def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
                pass

            def create_oauth2_request(self, request: Any) -> OAuth2Request:
                return request

            def handle_response(self, status: int, body: Any, headers: Any) -> tuple[int, Any, Any]:
                return status, body, headers

            def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
                pass

        class Grant(AuthorizationCodeGrant):  # type: ignore[misc]
            TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

            def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
                data = request.payload.data
                provider.codes[code] = _Code(
                    code, CLIENT_ID, data["redirect_uri"], data.get("scope", ""), data.get("nonce"),
                    dict(provider.user), data.get("code_challenge"), data.get("code_challenge_method"),
                )  # fmt: skip

            def query_authorization_code(self, code: str, client: _Client) -> _Code | None:
                return provider.codes.get(code)

            def delete_authorization_code(self, authorization_code: _Code) -> None:
                provider.codes.pop(authorization_code.code, None)

            def authenticate_user(self, authorization_code: _Code) -> dict[str, Any]:
                return authorization_code.user

        class Code(OpenIDCode):  # type: ignore[misc]
            def exists_nonce(self, nonce: str, request: OAuth2Request) -> bool:
                return False

            def resolve_client_private_key(self, client: _Client) -> RSAKey:
                return provider.key

            def get_client_algorithm(self, client: _Client) -> str:
                return "RS256"

            def get_encode_header(self, client: _Client) -> dict[str, str]:
                return {"alg": "RS256", "kid": str(provider.key.kid)}

            def get_client_claims(self, client: _Client) -> dict[str, Any]:
                return {"iss": provider.url, "aud": [CLIENT_ID], "exp": int(time.time()) + 600}

            def generate_user_info(self, user: dict[str, Any], scope: str) -> dict[str, Any]:
                return dict(user)

        server = Server(scopes_supported=["openid", "email", "profile", "name"])
        server.register_token_generator(
            "default", BearerTokenGenerator(lambda *args, **kwargs: secrets.token_urlsafe(32))
        )
        server.register_grant(Grant, [Code(require_nonce=True), CodeChallenge(required=True)])
        return server

    def _request(self, request: web.Request, data: dict[str, str]) -> OAuth2Request:
        return _Request(request, data)

    # -- endpoints --------------------------------------------------------------------------
    async def _discovery(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({
            "issuer": self.discovery_issuer or self.url,
            "authorization_endpoint": f"{self.url}/authorize",
            "token_endpoint": f"{self.url}/token",
            "jwks_uri": f"{self.url}/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
        })  # fmt: skip

    async def _jwks(self, request: web.Request) -> web.StreamResponse:
        self.jwks_fetches += 1
        return web.json_response(KeySet(list(self.keys)).as_dict(private=False))

    async def _authorize(self, request: web.Request) -> web.StreamResponse:
        oauth = self._request(request, dict(request.query))
        grant = self.server.get_consent_grant(request=oauth, end_user=self.user)
        status, body, headers = self.server.create_authorization_response(
            oauth, grant_user=self.user, grant=grant
        )
        if status != 302:
            return web.json_response(body, status=status)
        location = dict(headers)["Location"]
        return web.Response(status=302, headers={"Location": location})

    async def _token(self, request: web.Request) -> web.StreamResponse:
        if self.slow:
            # Longer than any timeout under test; stop() ends it (the runner's cleanup
            # waits for the handlers still running).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(30):
                    await self._stopping.wait()
        if self.garbage:
            return web.Response(text="<html><body>502 Bad Gateway</body></html>", content_type="text/html")
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        status, body, _headers = self.server.create_token_response(self._request(request, form))
        if status == 200 and self.tamper is not None and "id_token" in body:
            body["id_token"] = self._rewrite(body["id_token"])
        return web.json_response(body, status=status)

    def _rewrite(self, id_token: str) -> str:
        assert self.tamper is not None
        token = jwt.decode(id_token, KeySet(list(self.keys)))
        claims, header, key = self.tamper(dict(token.claims), dict(token.header))
        if header.get("alg") == "none":
            return unsigned(claims)
        return jwt.encode(header, claims, key if key is not None else self.key, algorithms=[header["alg"]])
