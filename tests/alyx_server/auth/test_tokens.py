"""Access tokens: a token verified once is still checked against the clock every time."""

from __future__ import annotations

from datetime import UTC, datetime

import jwt
import pytest

from alyx_server.auth.tokens import TokenSigner
from alyx_server.errors import Unauthorized
from alyx_server.tools.timestamps import ManualClock

SECRET = "s" * 40


def signer(clock: ManualClock) -> TokenSigner:
    return TokenSigner(SECRET, issuer="alyx", access_ttl=900, clock=clock)


def test_a_verified_token_still_expires() -> None:
    clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
    tokens = signer(clock)
    token, _ = tokens.issue(user_id="u1", session_id="s1", email="a@b.c", role="user", verified=True)
    first = tokens.check(token)
    assert tokens.check(token) == first
    clock.advance(899)
    assert tokens.check(token).user_id == "u1"
    clock.advance(1)
    with pytest.raises(Unauthorized) as caught:
        tokens.check(token)
    assert caught.value.code == "TOKEN_EXPIRED"


def test_a_token_not_valid_yet_is_refused_on_every_check() -> None:
    clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
    now = int(clock.now().timestamp())
    claims = {"iss": "alyx", "sub": "u1", "sid": "s1", "iat": now, "nbf": now + 60, "exp": now + 600,
              "jti": "j", "email": "a@b.c", "role": "user", "verified": True}  # fmt: skip
    token = jwt.encode(claims, SECRET, algorithm="HS256")
    tokens = signer(clock)
    for _ in range(2):
        with pytest.raises(Unauthorized) as caught:
            tokens.check(token)
        assert caught.value.code == "INVALID_TOKEN"
    clock.advance(60)
    assert tokens.check(token).session_id == "s1"


def test_a_forged_token_is_never_remembered() -> None:
    clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
    forger = TokenSigner("f" * 40, issuer="alyx", access_ttl=900, clock=clock)
    token, _ = forger.issue(user_id="admin", session_id="s", email="x@y.z", role="admin", verified=True)
    tokens = signer(clock)
    for _ in range(2):
        with pytest.raises(Unauthorized) as caught:
            tokens.check(token)
        assert caught.value.code == "INVALID_TOKEN"


def test_issued_tokens_are_standard_hs256_jwts() -> None:
    clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
    issued = signer(clock).issue(user_id="u1", session_id="s1", email="a@b.c", role="user", verified=True)
    token, expires = issued
    # PyJWT alone, with nothing of ours, reads the header and verifies the signature.
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "typ": "JWT"}
    unchecked_times = {"verify_exp": False, "verify_nbf": False, "verify_iat": False}
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], options=unchecked_times)
    now = int(clock.now().timestamp())
    assert claims["sub"] == "u1" and claims["sid"] == "s1" and claims["iss"] == "alyx"
    assert claims["iat"] == claims["nbf"] == now and claims["exp"] == now + 900
    assert expires == datetime(2026, 1, 1, 0, 15, tzinfo=UTC)
    # Another key does not verify it.
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, "o" * 40, algorithms=["HS256"], options={"verify_exp": False})
