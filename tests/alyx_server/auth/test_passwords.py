"""Password policy and hashing: limits are bytes, hashes are bcrypt, unknown emails cost the same."""

from __future__ import annotations

import pytest

from alyx_server.auth.passwords import PasswordHasher, check_password_policy
from alyx_server.config import PasswordPolicy
from alyx_server.errors import ValidationError

POLICY = PasswordPolicy(8, require_upper=True, require_lower=True, require_number=True, require_special=True)


WEAK_ALL = (
    "password must contain a lower-case letter, a digit, a character that is neither a letter nor a digit"
)
TOO_LONG = "Ab1!" + "\U0001f600" * 17 + "x"  # 22 characters, 73 bytes: bcrypt's limit is in bytes


@pytest.mark.parametrize(
    ("password", "code", "message"),
    [
        ("Ab1!", "PASSWORD_TOO_SHORT", "password must be at least 8 characters long"),
        ("abcdefg1!", "PASSWORD_TOO_WEAK", "password must contain an upper-case letter"),
        ("ABCDEFGH", "PASSWORD_TOO_WEAK", WEAK_ALL),
        (TOO_LONG, "PASSWORD_TOO_LONG", "password is 73 bytes long; bcrypt reads at most 72"),
    ],
)
def test_policy_messages(password: str, code: str, message: str) -> None:
    with pytest.raises(ValidationError) as refused:
        check_password_policy(password, POLICY)
    assert refused.value.code == code
    assert str(refused.value).startswith(message)


def test_seventy_two_bytes_pass_and_are_kept_whole() -> None:
    assert check_password_policy("Ab1!" + "x" * 68, POLICY) == b"Ab1!" + b"x" * 68


async def test_hash_and_verify_off_the_loop() -> None:
    hasher = PasswordHasher(4, threads=1)
    try:
        stored = await hasher.hash(b"secret-password")
        assert stored.startswith("$2b$04$")
        assert await hasher.verify("secret-password", stored)
        assert not await hasher.verify("secret-passwore", stored)
        assert not await hasher.verify("secret-password" + "x" * 100, stored)
        assert not await hasher.verify("anything", None)  # unknown email: dummy hash checked
        assert not await hasher.verify(12345, stored)
        assert not await hasher.verify("x", "not a bcrypt hash")
    finally:
        hasher.close()
