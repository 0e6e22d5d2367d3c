"""Access tokens (HS256 JWTs) and opaque secrets (refresh, verification, reset, admin tokens).

An access token carries `iss sub iat nbf exp jti sid email role verified` (SPEC §8). Its
signature is always checked with HMAC-SHA256 and the server's secret, and its header
must say HS256, so neither `alg: none` nor an RS256/HS256 confusion token is ever
accepted; its time window is checked against the injected clock, so expiry is testable
without sleeping. The claims are a convenience for
clients: the server trusts only `sub` and `sid`, and reads the role, email and flags
from the (cached) user row, so a change of role or a disabled account takes effect at
once, whatever an earlier token says.

Opaque secrets are `secrets.token_urlsafe(32)` (256 bits) and only their SHA-256 is
stored: a stolen database file lets nobody sign in. SHA-256 without salt is enough here
because the secrets are random, not chosen by people.

A refresh token is such a secret after a time prefix, `<12 hex digits of milliseconds>.`,
and what is stored of it is that prefix followed by the SHA-256 of the whole token. The
prefix is no secret (the access token issued with it says `iat` too); it only makes the
stored keys grow in time order, so each rotation adds its key at the end of the unique
index instead of at a random leaf: fewer pages written per commit (docs/benchmarks.md).
Refresh tokens issued without the prefix keep their plain SHA-256 and still work.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson

from alyx_server.errors import Unauthorized
from alyx_server.tools.timestamps import Clock

__all__ = [
    "ALGORITHM",
    "AccessClaims",
    "TokenSigner",
    "hash_secret",
    "invalid_token",
    "new_refresh_token",
    "new_secret",
    "refresh_token_key",
    "token_expired",
]

ALGORITHM = "HS256"
_REQUIRED = ("iss", "sub", "iat", "nbf", "exp", "jti", "sid")


def invalid_token(message: str) -> Unauthorized:
    return Unauthorized(message, code="INVALID_TOKEN")


def token_expired(message: str) -> Unauthorized:
    return Unauthorized(message, code="TOKEN_EXPIRED")


def new_secret() -> str:
    """A fresh random secret: 32 bytes, URL-safe base64 (43 characters)."""
    return secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    """What is stored of a secret: its SHA-256, in hex."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


_REFRESH_PREFIX = re.compile(r"[0-9a-f]{12}\.")


def new_refresh_token() -> str:
    """A fresh refresh token: `<milliseconds, 12 hex digits>.<new_secret()>` (see the module docstring)."""
    return f"{time.time_ns() // 1_000_000:012x}.{new_secret()}"


def refresh_token_key(token: str) -> str:
    """What is stored of a refresh token: its time prefix, when it has one, then its SHA-256."""
    digest = hash_secret(token)
    if _REFRESH_PREFIX.match(token) is not None:
        return token[:13] + digest
    return digest


@dataclass(frozen=True, slots=True)
class AccessClaims:
    """The claims of a valid access token that the server relies on."""

    user_id: str
    session_id: str
    expires: int


_VERIFIED_CACHE_SIZE = 10_000


def _b64url(raw: bytes) -> bytes:
    """Base64url without padding, as JWS serialises every part (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(raw).rstrip(b"=")


# The header PyJWT writes for HS256 (keys sorted, no spaces), serialised once.
_HEADER = _b64url(b'{"alg":"HS256","typ":"JWT"}')


class TokenSigner:
    """Issues and checks access tokens with one secret, issuer and lifetime."""

    def __init__(self, secret: str, *, issuer: str, access_ttl: float, clock: Clock) -> None:
        # Tokens are the JWS compact serialisation written out (header, orjson claims,
        # HMAC-SHA256, base64url): 6 µs per token to sign against 40 µs through PyJWT's
        # `jwt.encode`, whose standard-library JSON encoder took 6 to 9% of a refresh
        # (docs/benchmarks.md, "Workers vs PocketBase"). A test decodes them with PyJWT.
        self._secret = secret
        self._key = secret.encode("utf-8")
        self.issuer = issuer
        self.access_ttl = access_ttl
        self._clock = clock
        # Verified tokens -> (claims, nbf). Checking an HS256 signature is the
        # largest cost of a signed-in request; a token's signature and claims never change,
        # so only its time window is checked again. Revocation is the session cache's job.
        self._verified: dict[str, tuple[AccessClaims, float]] = {}

    def issue(
        self, *, user_id: str, session_id: str, email: str, role: str, verified: bool
    ) -> tuple[str, datetime]:
        """A signed access token for a session, and the moment it expires."""
        now = self._clock.now()
        expires = now + timedelta(seconds=self.access_ttl)
        issued = int(now.timestamp())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": user_id,
            "iat": issued,
            "nbf": issued,
            "exp": int(expires.timestamp()),
            "jti": secrets.token_urlsafe(12),
            "sid": session_id,
            "email": email,
            "role": role,
            "verified": verified,
        }
        signing_input = _HEADER + b"." + _b64url(orjson.dumps(claims))
        signature = hmac.new(self._key, signing_input, hashlib.sha256).digest()
        token = (signing_input + b"." + _b64url(signature)).decode("ascii")
        return token, expires.replace(microsecond=0)

    def check(self, token: str) -> AccessClaims:
        """The claims of `token`, or 401 INVALID_TOKEN (forged, malformed, wrong issuer,
        not valid yet) or TOKEN_EXPIRED."""
        known = self._verified.get(token)
        if known is not None:
            claims, nbf = known
            self._check_window(claims.expires, nbf)
            return claims
        checked, nbf = self._verify(token)
        if len(self._verified) >= _VERIFIED_CACHE_SIZE:
            self._verified.pop(next(iter(self._verified)))
        self._verified[token] = (checked, nbf)
        return checked

    def signed_claims(self, token: str) -> AccessClaims:
        """The claims of `token` with its signature and issuer checked but not its time
        window: for re-checking, after a revocation, a token accepted earlier whose expiry
        its holder enforces itself (an open realtime connection)."""
        known = self._verified.get(token)
        if known is not None:
            return known[0]
        return self._decode(token)[0]

    def _check_window(self, exp: float, nbf: float) -> None:
        now = self._clock.now().timestamp()
        if now < nbf:
            raise invalid_token("the access token is not valid yet (nbf is in the future)")
        if now >= exp:
            raise token_expired("the access token has expired; refresh it or log in again")

    def _verify(self, token: str) -> tuple[AccessClaims, float]:
        claims, nbf = self._decode(token)
        self._check_window(claims.expires, nbf)
        return claims, nbf

    def _decode(self, token: str) -> tuple[AccessClaims, float]:
        # Written out like signing: Alyx accepts one algorithm with one secret, and PyJWT
        # brings cryptography (about 10 MiB of every worker) for algorithms it never
        # accepts. The signature is always checked with HMAC-SHA256 and this server's
        # secret, whatever the header says, before any part is decoded; the header must
        # then say HS256. tests/alyx_server/auth/test_token_verify.py holds it against
        # PyJWT's `jwt.decode` on valid, tampered and forged tokens.
        header, payload, signature = _split(token)
        expected = hmac.new(self._key, header + b"." + payload, hashlib.sha256).digest()
        if not hmac.compare_digest(_b64url_decode(signature), expected):
            raise invalid_token("the access token is invalid (bad signature or format)")
        head = _json_object(header)
        if head.get("alg") != ALGORITHM or "crit" in head:
            raise invalid_token("the access token is invalid (bad signature or format)")
        claims = _json_object(payload)
        for claim in _REQUIRED:
            if claims.get(claim) is None:
                raise invalid_token(f"the access token lacks the {claim!r} claim")
        if claims["iss"] != self.issuer:
            raise invalid_token("the access token was issued by another server")
        if "aud" in claims:  # RFC 7519 §4.1.3: Alyx names no audience, so none is for it
            raise invalid_token("the access token names an audience; Alyx's tokens name none")
        if not isinstance(claims["jti"], str):
            raise invalid_token("the access token's jti claim must be a string")
        sub, sid, exp, nbf = claims["sub"], claims["sid"], claims["exp"], claims["nbf"]
        if not (isinstance(sub, str) and isinstance(sid, str)):
            raise invalid_token("the access token's sub and sid claims must be strings")
        if not (_is_number(exp) and _is_number(nbf)):
            raise invalid_token("the access token's exp and nbf claims must be numbers")
        return AccessClaims(sub, sid, int(exp)), float(nbf)


_B64URL = re.compile(rb"[A-Za-z0-9_-]*")


def _split(token: str) -> tuple[bytes, bytes, bytes]:
    """The three base64url parts of a JWS compact token, or 401 INVALID_TOKEN."""
    try:
        raw = token.encode("ascii")
    except UnicodeEncodeError:
        raw = b""
    parts = raw.split(b".")
    if len(parts) != 3 or not all(_B64URL.fullmatch(part) for part in parts):
        raise invalid_token("the access token is invalid (bad signature or format)")
    return parts[0], parts[1], parts[2]


def _b64url_decode(part: bytes) -> bytes:
    """Bytes of an unpadded base64url part (only its alphabet, checked by `_split`)."""
    try:
        return base64.urlsafe_b64decode(part + b"=" * (-len(part) % 4))
    except ValueError as e:  # binascii.Error: a length no encoder writes
        raise invalid_token("the access token is invalid (bad signature or format)") from e


def _json_object(part: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(_b64url_decode(part))
    except orjson.JSONDecodeError as e:
        raise invalid_token("the access token is invalid (bad signature or format)") from e
    if not isinstance(value, dict):
        raise invalid_token("the access token is invalid (bad signature or format)")
    return value


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
