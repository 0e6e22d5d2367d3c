"""`CredentialWatch`: each realtime connection follows the credential it authenticated with.

REST checks a token on every request; a WebSocket checks it once, when it authenticates,
and then lives for hours. So that an open connection loses at once what its token lost,
the watch files every authenticated connection under the rows its credential stands on:

    ("user", account id)        `_alyx_users`: role, flags, metadata, deletion
    ("session", family id)      `_alyx_sessions`: the token's session family (logout,
                                reuse detection, a password change or disabling revoke
                                it; a refresh rotates its rows and logs no change)
    ("token", token id)         `_alyx_tokens`: an admin or deploy token revoked or deleted

and listens to the change feed, whose events cover writes of this process and of any
other (`alyx admin revoke-token`, a second server), as the AuthCache's do. When a row a
connection is filed under changes, its token is checked again by `AuthService.recheck`,
the same checks REST runs on every request (expiry apart: the connection enforces it):

    refused             `hub.revoke`: an `error` with the code REST would answer
                        (SESSION_REVOKED, ACCOUNT_DISABLED, ...), subscriptions dropped,
                        new ones refused until an `auth` message brings a valid token
    another caller      (a new role, new metadata): `hub.reauth`, so every subscription
                        is re-bound to the caller as it now is and gets a fresh snapshot
                        (unless its token has expired: it stays paused until `auth`)
    the same caller     nothing

Checks run in one task, started by the first event of a batch, so every feed subscriber
(the AuthCache among them) has seen the whole batch first. The fan-out of deltas never
waits for this and is not touched by it: revocation is driven by events, not per delta.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from alyx_server.auth import AuthContext, AuthService
from alyx_server.db import ChangeEvent, Database
from alyx_server.errors import AlyxError
from alyx_server.realtime import Access, Client, RealtimeHub
from alyx_server.schema.system_tables import SESSIONS_TABLE, TOKENS_TABLE, USERS_TABLE

__all__ = ["CredentialWatch"]

log = logging.getLogger("alyx.realtime")

Key = tuple[str, str]
_KIND_OF_TABLE = {USERS_TABLE: "user", SESSIONS_TABLE: "session", TOKENS_TABLE: "token"}


def _unchecked() -> AlyxError:
    return AlyxError("the access of this connection could not be checked again (logged)")


@dataclass(slots=True)
class _Credential:
    """What a connection authenticated with, and how to build its Access for a caller."""

    client: Client
    token: str
    auth: AuthContext
    rebind: Callable[[AuthContext], Access]
    keys: tuple[Key, ...] = ()


class CredentialWatch:
    """See the module docstring."""

    def __init__(self, db: Database, hub: RealtimeHub, service: AuthService) -> None:
        self._hub = hub
        self._service = service
        self._held: dict[str, _Credential] = {}
        self._filed: dict[Key, set[str]] = {}
        self._pending: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self._unsubscribe = db.feed.subscribe(self._on_change)

    def __len__(self) -> int:
        return len(self._held)

    def track(
        self, client: Client, token: str, auth: AuthContext, rebind: Callable[[AuthContext], Access]
    ) -> None:
        """Follow `client`'s new credential. It is checked again at once: a revocation
        committed between the token's check and this call is not missed."""
        self.forget(client)
        self._held[client.id] = _Credential(client, token, auth, rebind)
        self._schedule((client.id,))

    def forget(self, client: Client) -> None:
        """Stop following `client` (it closed, went anonymous, or was revoked)."""
        held = self._held.pop(client.id, None)
        if held is not None:
            self._file(held, ())
        self._pending.discard(client.id)

    async def settled(self) -> None:
        """Wait until the checks of every change received so far are done (a `ping` waits
        for this, so its `pong` also comes after what those changes did to access)."""
        while self._task is not None:
            await asyncio.wait({self._task})

    async def close(self) -> None:
        self._unsubscribe()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._held.clear()
        self._filed.clear()

    # -- events ----------------------------------------------------------------------------
    def _on_change(self, event: ChangeEvent) -> None:
        kind = _KIND_OF_TABLE.get(event.collection)
        if kind is None:
            return
        found = self._filed.get((kind, str(event.doc_id)))
        if found:
            self._schedule(found)

    def _schedule(self, client_ids: Iterable[str]) -> None:
        self._pending.update(client_ids)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="alyx-realtime-credentials")

    async def _run(self) -> None:
        try:
            while self._pending:
                ids, self._pending = self._pending, set()
                for client_id in sorted(ids):
                    held = self._held.get(client_id)
                    if held is None:
                        continue
                    try:
                        await self._check(held)
                    except Exception:
                        # Fail closed: a connection half re-bound is not left serving.
                        log.exception("realtime connection %s: re-binding it failed", client_id)
                        self._revoke(held, _unchecked())
        finally:
            self._task = None

    async def _check(self, held: _Credential) -> None:
        client = held.client
        if client.closing:
            self.forget(client)
            return
        try:
            auth = self._service.recheck(held.token)
            keys = self._keys_of(auth)
        except AlyxError as e:
            self._revoke(held, e)
            return
        except Exception:
            # Fail closed: a credential that cannot be checked is not trusted any longer.
            log.exception("realtime connection %s: its credential could not be checked again", client.id)
            self._revoke(held, _unchecked())
            return
        self._file(held, keys)
        if auth.as_dict() == held.auth.as_dict():
            return
        if client.check_expiry(self._service.clock.now().timestamp()):
            return  # paused: the `auth` message that resumes it brings the caller as they are
        log.info("realtime connection %s: caller changed (%r -> %r), re-binding", client.id, held.auth, auth)
        held.auth = auth
        await self._hub.reauth(client, held.rebind(auth), expires_at=client.expires_at)

    def _revoke(self, held: _Credential, error: AlyxError) -> None:
        self.forget(held.client)
        dropped = self._hub.revoke(held.client, error)
        log.info(
            "realtime connection %s: credential refused (%s), %d subscriptions dropped",
            held.client.id, error.code, dropped,
        )  # fmt: skip

    def _keys_of(self, auth: AuthContext) -> tuple[Key, ...]:
        token_id = auth.token_id
        if token_id is not None:
            return (("token", token_id),)
        keys: list[Key] = [("user", auth.id)]
        if auth.session_id is not None:
            keys.append(("session", auth.session_id))
        return tuple(keys)

    def _file(self, held: _Credential, keys: tuple[Key, ...]) -> None:
        """File the connection under `keys` (and no longer under its former ones)."""
        client_id = held.client.id
        for key in held.keys:
            ids = self._filed.get(key)
            if ids is not None:
                ids.discard(client_id)
                if not ids:
                    del self._filed[key]
        held.keys = keys
        for key in keys:
            self._filed.setdefault(key, set()).add(client_id)
