"""OAuth sign-ins in progress, in `_alyx_oauth_flows`, shared by every process.

Three kinds of one-time secrets, each stored as its SHA-256 with an expiry and used once
(`used_at` set by one `UPDATE ... WHERE used_at IS NULL`, so two processes racing on the
same secret cannot both win):

    state     made by /start: the PKCE verifier, the nonce, the app's redirect, the callback
              URL sent to the provider, the hash of the browser cookie, and for a link the
              account; redeemed by /callback
    exchange  made by /callback: the account signed in; redeemed by POST /oauth/exchange
    link      made by POST /api/auth/identities for a signed-in account; redeemed by /start
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Literal

from alyx_server.schema.system_tables import OAUTH_FLOWS_TABLE
from alyx_server.tools.ids import new_id

__all__ = ["FlowKind", "FlowRow", "insert_flow", "prune_flows", "redeem_flow"]

FlowKind = Literal["state", "exchange", "link"]
_COLUMNS = (
    "id, provider, redirect, callback_url, code_verifier, nonce, browser_hash, user_id, expires_at, used_at"
)


@dataclass(frozen=True, slots=True)
class FlowRow:
    id: str
    provider: str
    redirect: str
    callback_url: str | None
    code_verifier: str | None
    nonce: str | None
    browser_hash: str | None
    user_id: str | None


def insert_flow(
    conn: sqlite3.Connection,
    *,
    kind: FlowKind,
    token_hash: str,
    provider: str,
    redirect: str,
    expires_at: str,
    now: str,
    callback_url: str | None = None,
    code_verifier: str | None = None,
    nonce: str | None = None,
    browser_hash: str | None = None,
    user_id: str | None = None,
) -> None:
    conn.execute(
        f"INSERT INTO {OAUTH_FLOWS_TABLE} (id, kind, token_hash, provider, redirect, callback_url, "
        "code_verifier, nonce, browser_hash, user_id, expires_at, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            new_id(),
            kind,
            token_hash,
            provider,
            redirect,
            callback_url,
            code_verifier,
            nonce,
            browser_hash,
            user_id,
            expires_at,
            now,
        ),
    )


def redeem_flow(conn: sqlite3.Connection, *, kind: FlowKind, token_hash: str, now: str) -> FlowRow | None:
    """Use up a live secret of `kind` and return its row; None when it is unknown, of
    another kind, expired or already used (the caller says which secret was refused)."""
    row = conn.execute(
        f"UPDATE {OAUTH_FLOWS_TABLE} SET used_at = ? "
        "WHERE token_hash = ? AND kind = ? AND used_at IS NULL AND expires_at > ? "
        f"RETURNING {_COLUMNS}",
        (now, token_hash, kind, now),
    ).fetchone()
    if row is None:
        return None
    return FlowRow(*row[:8])


def prune_flows(conn: sqlite3.Connection, *, now: str) -> int:
    """Delete expired secrets (used ones stay until they expire, so a replay is told apart)."""
    return conn.execute(f"DELETE FROM {OAUTH_FLOWS_TABLE} WHERE expires_at <= ?", (now,)).rowcount
