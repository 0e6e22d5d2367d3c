"""What is stored of a refresh token, and the ids of session rows (auth/tokens.py, auth/sessions.py).

A refresh token is `<12 hex digits of milliseconds>.<secret>` and its stored key is that
prefix followed by the SHA-256 of the whole token; session rows get version-7 (time-ordered)
ids. Tokens issued before, without the prefix, are stored as their plain SHA-256 and
still rotate, and presenting one of them twice still revokes the family.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import uuid
from contextlib import closing
from typing import Any

from alyx_server.api.auth import AUTH_SERVICE
from tests.alyx_server.auth.support import AppFactory, bearer, register

_PREFIXED = re.compile(r"[0-9a-f]{12}\.[A-Za-z0-9_-]{43}")


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def refresh(client: Any, token: str) -> tuple[int, Any]:
    response = await client.post("/api/auth/refresh", json={"refresh_token": token})
    return response.status, await response.json()


def session_rows(client: Any) -> list[tuple[str, str, str | None]]:
    with closing(sqlite3.connect(client.app[AUTH_SERVICE].db.path)) as conn:
        return conn.execute(
            "SELECT id, refresh_token_hash, replaced_by FROM _alyx_sessions ORDER BY rowid"
        ).fetchall()


async def test_refresh_tokens_carry_a_time_prefix_that_their_stored_keys_start_with(
    auth_app: AppFactory,
) -> None:
    client = await auth_app()
    ada = await register(client)
    tokens = [ada.refresh]
    for _ in range(3):
        status, body = await refresh(client, tokens[-1])
        assert status == 200, body
        tokens.append(body["tokens"]["refresh_token"])
    assert all(_PREFIXED.fullmatch(token) for token in tokens), tokens
    rows = session_rows(client)
    assert [key for _id, key, _next in rows] == [token[:13] + sha256(token) for token in tokens]
    # Row ids are version-7 UUIDs, and each retired row names its successor.
    assert all(uuid.UUID(row_id).version == 7 for row_id, _key, _next in rows)
    assert [successor for _id, _key, successor in rows[:-1]] == [row_id for row_id, _key, _next in rows[1:]]


async def test_a_refresh_token_without_a_time_prefix_still_rotates_and_its_reuse_is_caught(
    auth_app: AppFactory,
) -> None:
    client = await auth_app()
    ada = await register(client)
    legacy = "A" * 43  # what refresh tokens looked like before the prefix: token_urlsafe(32)
    with closing(sqlite3.connect(client.app[AUTH_SERVICE].db.path)) as conn, conn:
        conn.execute("UPDATE _alyx_sessions SET refresh_token_hash = ?", (sha256(legacy),))
    status, body = await refresh(client, legacy)
    assert status == 200, body
    assert _PREFIXED.fullmatch(body["tokens"]["refresh_token"])
    status, body = await refresh(client, legacy)
    assert (status, body["code"]) == (401, "TOKEN_REUSED")
    me = await client.get("/api/auth/me", headers=bearer(ada.access))
    assert me.status == 401
