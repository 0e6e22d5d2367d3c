"""Access tokens from the attacker's side: every forged, altered or stale token is refused.

Each test sends the request that must fail to the real application and checks the
status, the code and the message. The tokens are built by hand (base64url JSON and an
HMAC), so the tests do not depend on how the server's own JWT library parses them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import jwt

from alyx_server.api.auth import AUTH_SERVICE
from alyx_server.tools.timestamps import ManualClock
from tests.alyx_server.auth.support import AppFactory, auth_app, bearer, clock, register, smtp

__all__ = ["auth_app", "clock", "smtp"]

# An RSA public key as a server using RS256 would publish it: the classic confusion
# attack signs an HS256 token with this text as the HMAC secret.
PUBLIC_KEY_PEM = (
    "-----BEGIN PUBLIC KEY-----\n"
    "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAu1SU1LfVLPHCozMxH2Mo\n"
    "4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u\n"
    "-----END PUBLIC KEY-----\n"
)


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


async def test_a_token_signed_with_another_key_is_refused(auth_app: AppFactory) -> None:
    client = await auth_app()
    ada = await register(client)
    forged = jwt.encode(claims_of(ada.access), "another-secret-" * 4, algorithm="HS256")
    await assert_refused(client, forged, 401, "INVALID_TOKEN", "bad signature")


async def test_alg_none_is_refused(auth_app: AppFactory) -> None:
    client = await auth_app()
    ada = await register(client)
    for alg in ("none", "None", "NONE"):
        token = forge({"alg": alg, "typ": "JWT"}, claims_of(ada.access), None)
        await assert_refused(client, token, 401, "INVALID_TOKEN", "invalid")


async def test_hs_rs_algorithm_confusion_is_refused(auth_app: AppFactory) -> None:
    client = await auth_app()
    ada = await register(client)
    claims = claims_of(ada.access)
    key = PUBLIC_KEY_PEM.encode()
    for alg in ("RS256", "HS256", "HS512", "ES256"):
        token = forge({"alg": alg, "typ": "JWT"}, claims, key)
        await assert_refused(client, token, 401, "INVALID_TOKEN", "invalid")


async def test_tampered_role_claim_is_refused(auth_app: AppFactory) -> None:
    client = await auth_app()
    ada = await register(client)
    header, _payload, signature = ada.access.split(".")
    claims = claims_of(ada.access) | {"role": "admin"}
    tampered = f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"
    await assert_refused(client, tampered, 401, "INVALID_TOKEN", "bad signature")
    response = await client.get("/api/admin/users", headers=bearer(tampered))
    assert response.status == 401


async def test_garbage_and_wrong_schemes_are_refused(auth_app: AppFactory) -> None:
    client = await auth_app()
    for header in ("Bearer", "Bearer ", "Basic YWRhOnB3", "Token abc", "Bearer a.b", "Bearer ....."):
        response = await client.get("/api/auth/me", headers={"Authorization": header})
        body = await response.json()
        assert (response.status, body["code"]) == (401, "INVALID_TOKEN"), (header, body)
    # A bad token is refused even on a route open to anonymous callers.
    response = await client.get("/api/collections/notes", headers=bearer("not-a-token"))
    assert response.status == 401


async def test_expired_token_is_refused_with_token_expired(auth_app: AppFactory, clock: ManualClock) -> None:
    client = await auth_app(**{"auth.jwt.access_ttl": "15m"})
    ada = await register(client)
    clock.advance(15 * 60 - 1)
    assert (await client.get("/api/auth/me", headers=bearer(ada.access))).status == 200
    clock.advance(1)
    await assert_refused(client, ada.access, 401, "TOKEN_EXPIRED", "has expired")


async def test_not_yet_valid_token_is_refused(auth_app: AppFactory, clock: ManualClock) -> None:
    client = await auth_app()
    ada = await register(client)
    clock.advance(-120)
    await assert_refused(client, ada.access, 401, "INVALID_TOKEN", "not valid yet")


async def test_token_of_another_issuer_or_without_session_is_refused(auth_app: AppFactory) -> None:
    client = await auth_app()
    ada = await register(client)
    # Signed with the server's own secret (as if it had leaked into another deployment).
    key = client.app[AUTH_SERVICE].settings.jwt.secret
    other_issuer = jwt.encode(claims_of(ada.access) | {"iss": "someone-else"}, key, algorithm="HS256")
    await assert_refused(client, other_issuer, 401, "INVALID_TOKEN", "another server")
    no_sid = {k: v for k, v in claims_of(ada.access).items() if k != "sid"}
    await assert_refused(client, jwt.encode(no_sid, key, algorithm="HS256"), 401, "INVALID_TOKEN", "'sid'")
    made_up_session = jwt.encode(claims_of(ada.access) | {"sid": "no-such-session"}, key, algorithm="HS256")
    await assert_refused(client, made_up_session, 401, "SESSION_REVOKED", "log in again")
