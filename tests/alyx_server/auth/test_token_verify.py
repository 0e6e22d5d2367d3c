"""Access-token verification held against PyJWT, the reference, from the attacker's side.

Alyx checks HS256 signatures itself (alyx_server/auth/tokens.py). Here every token an
attacker can make, tampered, forged, re-signed with other headers or claims, is given to
both Alyx and `jwt.decode` with the one algorithm Alyx accepts: Alyx never accepts a token
PyJWT refuses, and accepts every well-formed token PyJWT accepts, with the same claims.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime
from typing import Any

import jwt
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from alyx_server.auth.tokens import AccessClaims, TokenSigner
from alyx_server.errors import Unauthorized
from alyx_server.tools.timestamps import ManualClock

SECRET = "k" * 40
NOW = datetime(2026, 1, 1, tzinfo=UTC)
T = int(NOW.timestamp())
CLAIMS: dict[str, Any] = {"iss": "alyx", "sub": "u1", "sid": "s1", "iat": T, "nbf": T, "exp": T + 600,
                          "jti": "j1", "email": "a@b.c", "role": "user", "verified": True}  # fmt: skip
UNTIMED = {"verify_exp": False, "verify_nbf": False, "verify_iat": False,
           "require": ["iss", "sub", "iat", "nbf", "exp", "jti", "sid"]}  # fmt: skip


def ours(token: str) -> AccessClaims | None:
    signer = TokenSigner(SECRET, issuer="alyx", access_ttl=900, clock=ManualClock(NOW))
    try:
        return signer.check(token)
    except Unauthorized as e:
        assert e.code in ("INVALID_TOKEN", "TOKEN_EXPIRED")
        return None


def reference(token: str) -> AccessClaims | None:
    """PyJWT's verdict, with the checks Alyx adds on top (string ids, numeric times)."""
    try:
        claims = jwt.decode(token, SECRET, algorithms=["HS256"], issuer="alyx", options=UNTIMED)  # type: ignore[arg-type]
    except jwt.InvalidTokenError:
        return None
    sub, sid, exp, nbf = claims["sub"], claims["sid"], claims["exp"], claims["nbf"]
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (exp, nbf))
    if not (isinstance(sub, str) and isinstance(sid, str) and numbers) or not nbf <= T < int(exp):
        return None
    return AccessClaims(sub, sid, int(exp))


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def hand_signed(header: dict[str, Any], claims: dict[str, Any], key: str = SECRET) -> str:
    signing_input = f"{b64(orjson.dumps(header))}.{b64(orjson.dumps(claims))}"
    mac = hmac.new(key.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


def issued() -> str:
    signer = TokenSigner(SECRET, issuer="alyx", access_ttl=600, clock=ManualClock(NOW))
    return signer.issue(user_id="u1", session_id="s1", email="a@b.c", role="user", verified=True)[0]


def test_an_issued_token_is_accepted_by_both() -> None:
    token = issued()
    assert ours(token) == reference(token) == AccessClaims("u1", "s1", T + 600)


FORGED = {
    "unsigned, alg none": lambda: jwt.encode(CLAIMS, None, algorithm="none"),
    "alg none with our signature": lambda: hand_signed({"alg": "none"}, CLAIMS),
    "alg RS256 with our HMAC": lambda: hand_signed({"alg": "RS256", "typ": "JWT"}, CLAIMS),
    "alg HS512 with our HMAC": lambda: hand_signed({"alg": "HS512"}, CLAIMS),
    "another secret": lambda: jwt.encode(CLAIMS, "x" * 40, algorithm="HS256"),
    "admin role, another secret": lambda: jwt.encode({**CLAIMS, "role": "admin"}, "x" * 40),
    "no signature": lambda: issued().rsplit(".", 1)[0] + ".",
    "signature of another token": lambda: (
        hand_signed({"alg": "HS256"}, {**CLAIMS, "sub": "u2"}).rsplit(".", 1)[0]
        + "."
        + issued().rsplit(".", 1)[1]
    ),
    "two parts": lambda: issued().rsplit(".", 1)[0],
    "four parts": lambda: issued() + ".e30",
    "empty": lambda: "",
    "not base64": lambda: "a.b*c.d",
    "non-ASCII": lambda: issued() + "é",
    "a list, not claims": lambda: hand_signed({"alg": "HS256"}, [CLAIMS]),  # type: ignore[arg-type]
    "a critical header": lambda: hand_signed({"alg": "HS256", "crit": ["b64"], "b64": False}, CLAIMS),
    "another issuer": lambda: jwt.encode({**CLAIMS, "iss": "other"}, SECRET),
    "no sid": lambda: jwt.encode({k: v for k, v in CLAIMS.items() if k != "sid"}, SECRET),
    "null sub": lambda: jwt.encode({**CLAIMS, "sub": None}, SECRET),
    "numeric sub": lambda: jwt.encode({**CLAIMS, "sub": 7}, SECRET),
    "expired": lambda: jwt.encode({**CLAIMS, "exp": T}, SECRET),
    "not valid yet": lambda: jwt.encode({**CLAIMS, "nbf": T + 1}, SECRET),
    "an audience": lambda: jwt.encode({**CLAIMS, "aud": "x"}, SECRET),
    "numeric jti": lambda: hand_signed({"alg": "HS256"}, {**CLAIMS, "jti": 7}),
    "boolean exp": lambda: jwt.encode({**CLAIMS, "exp": True}, SECRET),
}


@pytest.mark.parametrize("forge", FORGED.values(), ids=FORGED.keys())
def test_forged_and_broken_tokens_are_refused(forge: Any) -> None:
    token = forge()
    assert ours(token) is None
    assert reference(token) is None


VALID_VARIANTS = {
    "PyJWT's own encoding": lambda: jwt.encode(CLAIMS, SECRET, algorithm="HS256"),
    "a kid in the header": lambda: jwt.encode(CLAIMS, SECRET, algorithm="HS256", headers={"kid": "1"}),
    "no typ": lambda: hand_signed({"alg": "HS256"}, CLAIMS),
    "fractional times": lambda: jwt.encode({**CLAIMS, "exp": T + 1.5, "nbf": T - 0.5}, SECRET),
    "extra claims": lambda: jwt.encode({**CLAIMS, "scope": ["a"], "n": {"m": 1}}, SECRET),
}


@pytest.mark.parametrize("make", VALID_VARIANTS.values(), ids=VALID_VARIANTS.keys())
def test_well_formed_tokens_signed_with_the_key_are_accepted_like_pyjwt(make: Any) -> None:
    token = make()
    assert ours(token) is not None
    assert ours(token) == reference(token)


@given(position=st.integers(min_value=0), replacement=st.sampled_from("AQgw-_.=+/ Ze0"))
def test_a_tampered_token_is_never_accepted_where_pyjwt_refuses(position: int, replacement: str) -> None:
    token = issued()
    at = position % len(token)
    tampered = token[:at] + replacement + token[at + 1 :]
    verdict = ours(tampered)
    if verdict is not None:
        assert verdict == reference(tampered)


@given(
    claims=st.dictionaries(
        st.sampled_from(list(CLAIMS)),
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(T - 9, T + 9),
            st.text(max_size=3),
            st.sampled_from(["alyx", "u1"]),
        ),
    )
)
def test_any_claims_signed_with_the_key_get_pyjwts_verdict(claims: dict[str, Any]) -> None:
    token = hand_signed({"alg": "HS256", "typ": "JWT"}, {**CLAIMS, **claims})
    assert ours(token) == reference(token)
