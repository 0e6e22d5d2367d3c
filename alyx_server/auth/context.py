"""`AuthContext`: who is calling, as rules, realtime and handlers see it.

It is the `auth` object of SPEC §9, a read-only mapping `{id, email, role, verified,
metadata, app_metadata}` (so rules and `AccessPolicy` read it like any mapping), plus
what the server itself needs: `kind` (a signed-in user, an admin token or a deploy
token), `is_admin` (admins bypass rules), the session family of a user's token, and
the permissions of a token.

Admin and deploy tokens are principals without an account: an admin token acts with
role `admin`; a deploy token with role `deploy`, which no rule grants by default and
which is not an admin.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Literal

from alyx_server.auth.users import UserRecord

__all__ = ["AuthContext", "PrincipalKind", "token_principal", "user_principal"]

PrincipalKind = Literal["user", "admin_token", "deploy_token"]
_TOKEN_ID_PREFIX = "token:"


class AuthContext(Mapping[str, Any]):
    """The caller; see the module docstring. Immutable once built."""

    __slots__ = ("_data", "is_admin", "kind", "permissions", "session_id", "user")

    _data: dict[str, Any]
    is_admin: bool
    kind: PrincipalKind
    permissions: frozenset[str]
    session_id: str | None
    user: UserRecord | None

    def __init__(
        self,
        data: dict[str, Any],
        *,
        kind: PrincipalKind,
        session_id: str | None = None,
        permissions: frozenset[str] = frozenset(),
        user: UserRecord | None = None,
    ) -> None:
        self._data = data
        self.kind = kind
        self.session_id = session_id
        self.permissions = permissions
        self.user = user
        self.is_admin = data["role"] == "admin"

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"AuthContext({self.kind}, id={self._data['id']!r}, role={self._data['role']!r})"

    @property
    def id(self) -> str:
        return str(self._data["id"])

    @property
    def role(self) -> str:
        return str(self._data["role"])

    @property
    def token_id(self) -> str | None:
        """The `_alyx_tokens` row of an admin or deploy token; None for a signed-in user."""
        if self.kind == "user":
            return None
        return self.id.removeprefix(_TOKEN_ID_PREFIX)

    def allows(self, permission: str) -> bool:
        """Whether this caller may use an admin capability (`users`, `deploy`, `schema`...)."""
        if self.kind == "user":
            return self.is_admin
        return "*" in self.permissions or permission in self.permissions

    def as_dict(self) -> dict[str, Any]:
        """A plain copy of the `auth` object (for serialising to function runtimes)."""
        return dict(self._data)


def user_principal(user: UserRecord, session_id: str | None) -> AuthContext:
    """The context of a signed-in account, read from its (cached) row."""
    data = {
        "id": user.id,
        "email": user.email,
        "role": user.role,
        "verified": user.verified,
        "metadata": user.metadata,
        "app_metadata": user.app_metadata,
    }
    return AuthContext(data, kind="user", session_id=session_id, user=user)


def token_principal(
    token_id: str, name: str, kind: Literal["admin", "deploy"], permissions: frozenset[str]
) -> AuthContext:
    """The context of an admin or deploy token."""
    data = {
        "id": f"{_TOKEN_ID_PREFIX}{token_id}",
        "email": None,
        "role": kind,
        "verified": True,
        "metadata": {"token_name": name},
        "app_metadata": {},
    }
    principal: PrincipalKind = "admin_token" if kind == "admin" else "deploy_token"
    return AuthContext(data, kind=principal, permissions=permissions)
