"""A small OAuth2 provider with a user API on a loopback port, as GitHub's or Discord's
(neither has an ID token: the user comes from their API), for the preset tests.

    github   /login/oauth/authorize  /login/oauth/access_token  /api/v3/user  /api/v3/user/emails
    discord  /oauth2/authorize       /api/oauth2/token          /api/users/@me

The authorization endpoint approves at once and redirects back with a code and the state,
as the provider does after its login page. The token endpoint checks what a real one
checks: the client id and secret, the code (once), the redirect URI it was issued for and
the PKCE S256 verifier; the user endpoints check the bearer token. `user` and `emails`
are what the person's account holds; `hits` lists the paths called, in order.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlencode

from aiohttp import web
from authlib.oauth2.rfc7636 import create_s256_code_challenge

__all__ = ["ApiProvider", "Kind"]

Kind = Literal["github", "discord"]
_PATHS: dict[str, tuple[str, str, str]] = {
    "github": ("/login/oauth/authorize", "/login/oauth/access_token", "/api/v3/user"),
    "discord": ("/oauth2/authorize", "/api/oauth2/token", "/api/users/@me"),
}


@dataclass
class _Grant:
    redirect_uri: str
    challenge: str


@dataclass
class ApiProvider:
    """See the module docstring. `start(port)` before the application."""

    kind: Kind
    client_id: str
    client_secret: str
    user: dict[str, Any] = field(default_factory=dict)
    emails: list[dict[str, Any]] = field(default_factory=list)
    hits: list[str] = field(default_factory=list)
    url: str = ""
    _grants: dict[str, _Grant] = field(default_factory=dict)
    _tokens: set[str] = field(default_factory=set)
    _runner: web.AppRunner | None = None

    @property
    def endpoints(self) -> dict[str, str]:
        """The `authorize_url`, `token_url` and `userinfo_url` to configure."""
        authorize, token, user = _PATHS[self.kind]
        return {
            "authorize_url": self.url + authorize,
            "token_url": self.url + token,
            "userinfo_url": self.url + user,
        }

    async def start(self, port: int) -> None:
        authorize, token, user = _PATHS[self.kind]
        app = web.Application()
        app.router.add_get(authorize, self._authorize)
        app.router.add_post(token, self._token)
        app.router.add_get(user, self._user)
        if self.kind == "github":
            app.router.add_get(f"{user}/emails", self._emails)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _authorize(self, request: web.Request) -> web.StreamResponse:
        self.hits.append(request.path)
        query = request.query
        if query.get("client_id") != self.client_id or query.get("code_challenge_method") != "S256":
            return web.json_response({"error": "invalid_request"}, status=400)
        code = secrets.token_urlsafe(16)
        self._grants[code] = _Grant(query["redirect_uri"], query["code_challenge"])
        answer = urlencode({"code": code, "state": query["state"]})
        return web.Response(status=302, headers={"Location": f"{query['redirect_uri']}?{answer}"})

    async def _token(self, request: web.Request) -> web.StreamResponse:
        self.hits.append(request.path)
        form = await request.post()
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
            return web.json_response({"error": "invalid_client"}, status=401)
        grant = self._grants.pop(str(form.get("code")), None)
        verifier = str(form.get("code_verifier", ""))
        if (
            grant is None
            or form.get("redirect_uri") != grant.redirect_uri
            or create_s256_code_challenge(verifier) != grant.challenge
        ):
            return web.json_response({"error": "invalid_grant"}, status=400)
        token = secrets.token_urlsafe(24)
        self._tokens.add(token)
        return web.json_response({"access_token": token, "token_type": "bearer", "scope": "user"})

    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        return header.startswith("Bearer ") and header[len("Bearer ") :] in self._tokens

    async def _user(self, request: web.Request) -> web.StreamResponse:
        self.hits.append(request.path)
        if not self._authorized(request):
            return web.json_response({"message": "Bad credentials"}, status=401)
        return web.json_response(self.user)

    async def _emails(self, request: web.Request) -> web.StreamResponse:
        self.hits.append(request.path)
        if not self._authorized(request):
            return web.json_response({"message": "Bad credentials"}, status=401)
        return web.json_response(self.emails)
