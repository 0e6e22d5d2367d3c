"""Access tokens (HS256 JWTs) and opaque secrets (refresh, verification, reset, admin tokens).

An access token carries `iss sub iat nbf exp jti sid email role verified` (SPEC §8). It
is checked against one fixed algorithm list, `["HS256"]`, so neither `alg: none` nor an
RS256/HS256 confusion token is ever accepted, and against the injected clock rather than
PyJWT's own, so expiry is testable without sleeping. The claims are a convenience for
clients: the server trusts only `sub` and `sid`, and reads the role, email and flags
from the (cached) user row, so a change of role or a disabled account takes effect at
once, whatever an earlier token says.

Opaque secrets are `secrets.token_urlsafe(32)` (256 bits) and only their SHA-256 is
stored: a stolen database file lets nobody sign in. SHA-256 without salt is enough here
because the secrets are random, not chosen by people.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
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
    "new_secret",
    "token_expired",
]

ALGORITHM = "HS256"
_ALGORITHMS = [ALGORITHM]
_REQUIRED = ["iss", "sub", "iat", "nbf", "exp", "jti", "sid"]
_DECODE_OPTIONS: Any = {
    "require": _REQUIRED,
    # Time claims are checked below against the injected clock.
    "verify_exp": False,
    "verify_nbf": False,
    "verify_iat": False,
}


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
        # Verification goes through PyJWT's public API (`jwt.decode` with a fixed
        # algorithm list). Signing is the JWS compact serialisation written out (header,
        # orjson claims, HMAC-SHA256, base64url): 6 µs per token against 40 µs through
        # `jwt.encode`, whose standard-library JSON encoder took 6 to 9% of a refresh
        # (docs/benchmarks.md, "Workers vs PocketBase"). The result is the token PyJWT
        # would write, up to the claims' key order; a test decodes it with PyJWT.
        self._secret = secret
        self._key = secret.encode("utf-8")
        self.issuer = issuer
        self.access_ttl = access_ttl
        self._clock = clock
        # Verified tokens -> (claims, nbf). Checking an HS256 signature with PyJWT is the
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
        # PyJWT loads cryptography (about 10 MiB of every process) for algorithms Alyx
        # never accepts: it is imported by the first token checked, not with the server.
        import jwt

        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=_ALGORITHMS,
                issuer=self.issuer,
                options=_DECODE_OPTIONS,
            )
        except jwt.InvalidIssuerError as e:
            raise invalid_token("the access token was issued by another server") from e
        except jwt.MissingRequiredClaimError as e:
            raise invalid_token(f"the access token lacks the {e.claim!r} claim") from e
        except jwt.InvalidTokenError as e:
            raise invalid_token("the access token is invalid (bad signature or format)") from e
        sub, sid, exp, nbf = claims["sub"], claims["sid"], claims["exp"], claims["nbf"]
        if not (isinstance(sub, str) and isinstance(sid, str)):
            raise invalid_token("the access token's sub and sid claims must be strings")
        if not (_is_number(exp) and _is_number(nbf)):
            raise invalid_token("the access token's exp and nbf claims must be numbers")
        return AccessClaims(sub, sid, int(exp)), float(nbf)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
