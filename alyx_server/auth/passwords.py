"""Passwords: the configured policy, and bcrypt hashing that never runs on the event loop.

bcrypt reads at most 72 bytes of a password and silently ignores the rest, so a longer
password is refused (`PASSWORD_TOO_LONG`) instead of being truncated: two passwords that
share their first 72 bytes must never both open the same account. The length is checked
on the UTF-8 bytes before anything else, so a megabyte of password costs no hashing.

Hashing and checking run on a small thread pool of their own (bcrypt releases the GIL),
so a burst of logins neither stalls the event loop nor starves the default executor.
A login for an unknown email is checked against a dummy hash of the same cost, so both
failures take the same time and the answer's timing does not reveal whether the email
has an account.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from concurrent.futures import ThreadPoolExecutor

import bcrypt

from alyx_server.config import PasswordPolicy
from alyx_server.errors import FieldIssue, ValidationError

__all__ = [
    "MAX_PASSWORD_BYTES",
    "PasswordHasher",
    "check_password_policy",
    "hash_password_now",
    "password_error",
]

MAX_PASSWORD_BYTES = 72
"""bcrypt's limit: it ignores every byte past the 72nd."""


def password_error(code: str, message: str, field: str = "password") -> ValidationError:
    """A 400 with one of the PASSWORD_* codes of SPEC §8, naming the field at fault."""
    return ValidationError(message, [FieldIssue(field, code.lower(), message)], code=code)


def _password_bytes(password: object, field: str) -> bytes:
    if not isinstance(password, str):
        raise ValidationError(
            f"{field} must be a string",
            [FieldIssue(field, "invalid_type", f"{field} must be a string")],
        )
    encoded = password.encode("utf-8", "surrogatepass")
    if len(encoded) > MAX_PASSWORD_BYTES:
        raise password_error(
            "PASSWORD_TOO_LONG",
            f"{field} is {len(encoded)} bytes long; bcrypt reads at most {MAX_PASSWORD_BYTES} "
            "bytes, so passwords are limited to that (UTF-8 encoded)",
            field,
        )
    return encoded


def check_password_policy(password: object, policy: PasswordPolicy, field: str = "password") -> bytes:
    """The password as bytes, or a 400 PASSWORD_TOO_LONG / TOO_SHORT / TOO_WEAK naming the rule."""
    encoded = _password_bytes(password, field)
    text = encoded.decode("utf-8", "surrogatepass")
    if len(text) < policy.min_length:
        raise password_error(
            "PASSWORD_TOO_SHORT",
            f"{field} must be at least {policy.min_length} characters long",
            field,
        )
    missing = [
        what
        for wanted, what, test in (
            (policy.require_upper, "an upper-case letter", str.isupper),
            (policy.require_lower, "a lower-case letter", str.islower),
            (policy.require_number, "a digit", str.isdigit),
            (policy.require_special, "a character that is neither a letter nor a digit", _special),
        )
        if wanted and not any(test(ch) for ch in text)
    ]
    if missing:
        raise password_error("PASSWORD_TOO_WEAK", f"{field} must contain " + ", ".join(missing), field)
    return encoded


def _special(ch: str) -> bool:
    return not ch.isalnum()


class PasswordHasher:
    """bcrypt at a given cost, on a thread pool of `threads` workers (default: one per core)."""

    def __init__(self, cost: int, *, threads: int | None = None) -> None:
        self.cost = cost
        self._executor = ThreadPoolExecutor(
            max_workers=threads or os.cpu_count() or 2, thread_name_prefix="alyx-bcrypt"
        )
        self._dummy: bytes | None = None

    async def hash(self, password: bytes) -> str:
        """A new salted hash of `password` (already checked by `check_password_policy`)."""
        loop = asyncio.get_running_loop()
        hashed = await loop.run_in_executor(self._executor, _hash, password, self.cost)
        return hashed.decode("ascii")

    async def verify(self, password: object, stored: str | None) -> bool:
        """Whether `password` matches `stored`; with no stored hash (unknown email, or an
        account without a password) a dummy hash is checked, so the time is the same."""
        try:
            encoded = _password_bytes(password, "password")
        except ValidationError:
            encoded = b""  # still pay for one comparison: the answer's timing stays uniform
            stored = None
        loop = asyncio.get_running_loop()
        target = stored.encode("ascii") if stored else await self._dummy_hash()
        matched = await loop.run_in_executor(self._executor, _check, encoded, target)
        return matched and stored is not None

    async def _dummy_hash(self) -> bytes:
        if self._dummy is None:
            loop = asyncio.get_running_loop()
            secret = secrets.token_urlsafe(32).encode()
            self._dummy = await loop.run_in_executor(self._executor, _hash, secret, self.cost)
        return self._dummy

    def close(self) -> None:
        """Stop the thread pool once the hashes in progress finish."""
        self._executor.shutdown(wait=True)


def hash_password_now(password: bytes, cost: int) -> str:
    """Hash on the calling thread: for the command line, which has no event loop to protect."""
    return _hash(password, cost).decode("ascii")


def _hash(password: bytes, cost: int) -> bytes:
    return bcrypt.hashpw(password, bcrypt.gensalt(rounds=cost))


def _check(password: bytes, stored: bytes) -> bool:
    try:
        return bcrypt.checkpw(password, stored)
    except ValueError:
        return False  # a malformed stored hash never matches
