"""Accounts and sessions (SPEC §8): who a request comes from, and how they got there.

    passwords.py     policy, bcrypt off the event loop, the 72-byte limit
    tokens.py        HS256 access tokens; opaque secrets stored as SHA-256
    users.py         `_alyx_users` rows, email normalisation
    sessions.py      `_alyx_sessions`: families, rotation, reuse detection, revocation
    onetime.py       verification and reset codes (`_alyx_auth_tokens`)
    admin_tokens.py  admin and deploy tokens (`_alyx_tokens`)
    cache.py         accounts and families cached per process, dropped by the change feed
    context.py       `AuthContext`, the `auth` object of rules (SPEC §9)
    ratelimit.py     sliding-window limits per address and per email, counted in the database
    mailer.py        SMTP or the log
    service.py       `AuthService`: register, login, refresh, logout, authenticate
    account.py       self-service: profile, password, deletion, verification, reset
    admin_users.py   account management for administrators

Nothing here imports the web framework: `alyx_server.api.auth` and
`alyx_server.api.admin_users` turn HTTP requests into calls on these.
"""

from alyx_server.auth.context import AuthContext, PrincipalKind, token_principal, user_principal
from alyx_server.auth.service import RESET_TTL, VERIFY_TTL, AuthService, Client, Tokens

__all__ = [
    "RESET_TTL",
    "VERIFY_TTL",
    "AuthContext",
    "AuthService",
    "Client",
    "PrincipalKind",
    "Tokens",
    "token_principal",
    "user_principal",
]
