"""Access tokens from the attacker's side: every forged, altered or stale token is refused.

Each scenario sends the request that must fail to the real application (where ada has
registered) and checks the status, the code and the message. The tokens are built by hand
(base64url JSON and an HMAC), so the tests do not depend on how the server's own JWT library parses them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

import jwt
import pytest

from alyx_server.api.auth import AUTH_SERVICE
from alyx_server.tools.timestamps import ManualClock
from tests.alyx_server.api.scenarios import Names, Scenario, run_scenario
from tests.alyx_server.auth.support import AppFactory, bearer, register, signed_in

# An RSA public key as a server using RS256 would publish it: the classic confusion
# attack signs an HS256 token with this text as the HMAC secret.
PUBLIC_KEY_PEM = (
    "-----BEGIN PUBLIC KEY-----\n"
    "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAu1SU1LfVLPHCozMxH2Mo\n"
    "4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u\n"
    "-----END PUBLIC KEY-----\n"
)
PUBLIC_KEY = PUBLIC_KEY_PEM.encode()
ME = "/api/auth/me"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def forge(header: dict[str, Any], claims: dict[str, Any], key: bytes | None) -> str:
    """A JWS compact token; `key` None leaves the signature empty (alg none)."""
    signing_input = _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())
    signature = b"" if key is None else hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + _b64(signature)


def claims_of(token: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(_unb64(token.split(".")[1]))
    return result


def refused(name: str, token: Callable[[Names], str], status: int, code: str, message: str) -> Scenario:
    """GET /api/auth/me with `token(names)` must answer `status` and `code`."""
    return Scenario(name, "GET", ME, token=token, status=status, code=code, message=message)


def resigned(names: Names, changes: dict[str, Any], drop: str = "") -> str:
    """Ada's claims changed, signed with the server's own secret (as if it had leaked)."""
    claims = {k: v for k, v in claims_of(names["ada"]).items() if k != drop} | changes
    return jwt.encode(claims, names["secret"], algorithm="HS256")


def tampered_role(names: Names) -> str:
    header, _payload, signature = names["ada"].split(".")
    claims = claims_of(names["ada"]) | {"role": "admin"}
    return f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"


def back_in_time(names: Names) -> None:
    names["clock"].advance(-120)


SCENARIOS = [
    refused(
        "signed with another key",
        lambda n: jwt.encode(claims_of(n["ada"]), "another-secret-" * 4, algorithm="HS256"),
        401, "INVALID_TOKEN", "bad signature",
    ),
    *(
        refused(f"alg {alg}", lambda n, alg=alg: forge({"alg": alg, "typ": "JWT"}, claims_of(n["ada"]), None),
                401, "INVALID_TOKEN", "invalid")
        for alg in ("none", "None", "NONE")
    ),
    # The confusion attack: an HS256 token signed with the RSA public key's text.
    *(
        refused(f"{alg} signed with a public key",
                lambda n, alg=alg: forge({"alg": alg, "typ": "JWT"}, claims_of(n["ada"]), PUBLIC_KEY),
                401, "INVALID_TOKEN", "invalid")
        for alg in ("RS256", "HS256", "HS512", "ES256")
    ),
    refused("tampered role claim", tampered_role, 401, "INVALID_TOKEN", "bad signature"),
    Scenario("tampered role claim on the admin API", "GET", "/api/admin/users", token=tampered_role,
             status=401),
    *(
        Scenario(f"Authorization {header!r}", "GET", ME, headers={"Authorization": header},
                 status=401, code="INVALID_TOKEN")
        for header in ("Bearer", "Bearer ", "Basic YWRhOnB3", "Token abc", "Bearer a.b", "Bearer .....")
    ),
    # A bad token is refused even on a route open to anonymous callers.
    Scenario("bad token on an open route", "GET", "/api/collections/notes", token=lambda n: "not-a-token",
             status=401),
    Scenario("not yet valid", "GET", ME, token="ada", before=back_in_time,
             status=401, code="INVALID_TOKEN", message="not valid yet"),
    refused("another issuer", lambda n: resigned(n, {"iss": "someone-else"}),
            401, "INVALID_TOKEN", "another server"),
    refused("no session claim", lambda n: resigned(n, {}, drop="sid"), 401, "INVALID_TOKEN", "'sid'"),
    refused("a made-up session", lambda n: resigned(n, {"sid": "no-such-session"}),
            401, "SESSION_REVOKED", "log in again"),
]  # fmt: skip


@pytest.mark.parametrize("scenario", SCENARIOS, ids=str)
async def test_scenario(auth_app: AppFactory, clock: ManualClock, scenario: Scenario) -> None:
    client = await auth_app(**scenario.settings)
    names = await signed_in(client)
    names |= {"clock": clock, "secret": client.app[AUTH_SERVICE].settings.jwt.secret}
    await run_scenario(client, scenario, names)


async def assert_refused(client: Any, token: str, status: int, code: str, message: str) -> None:
    response = await client.get("/api/auth/me", headers=bearer(token))
    body = await response.json()
    assert (response.status, body["code"]) == (status, code), body
    assert message in body["error"]


async def test_a_valid_token_is_accepted_and_claims_follow_the_contract(auth_app: AppFactory) -> None:
    client = await auth_app()
    ada = await register(client, "Ada@Example.com")
    response = await client.get("/api/auth/me", headers=bearer(ada.access))
    assert response.status == 200
    assert (await response.json())["user"]["email"] == "ada@example.com"
    claims = claims_of(ada.access)
    assert set(claims) == {"iss", "sub", "iat", "nbf", "exp", "jti", "sid", "email", "role", "verified"}
    assert (claims["iss"], claims["sub"], claims["role"]) == ("alyx", ada.id, "user")
    assert json.loads(_unb64(ada.access.split(".")[0]))["alg"] == "HS256"


async def test_expired_token_is_refused_with_token_expired(auth_app: AppFactory, clock: ManualClock) -> None:
    client = await auth_app(**{"auth.jwt.access_ttl": "15m"})
    ada = await register(client)
    clock.advance(15 * 60 - 1)
    assert (await client.get("/api/auth/me", headers=bearer(ada.access))).status == 200
    clock.advance(1)
    await assert_refused(client, ada.access, 401, "TOKEN_EXPIRED", "has expired")
