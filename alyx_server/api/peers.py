"""Peer sockets: how the processes serving one database reach each other.

Every server process listens on a Unix stream socket of its own in the database's run
directory (`tools.processes.run_dir`, mode 0700: only this user can connect, which is the
authentication), named `peer-<worker>-<pid>.sock`. The socket is bound under a temporary
name and renamed into place once it listens, so a socket found under its final name that
refuses a connection belongs to a process that is gone: whoever finds it removes it.

    Peers(database, worker, pid)
        listen()                  bind this process's socket (a listening socket.socket)
        close()                   remove it (on exit)
        siblings()                the other processes' sockets, as `Peer`s
        call(peer, path, ...)     one request to one sibling: a `PeerAnswer`
        call_all(path, ...)       the same request to every sibling at once, each
                                  sibling's answer (a dead one is removed and left out)
        lines(peer, path)         a sibling's line stream (NDJSON), line by line
    PeerFollower(peers, path, on_line, on_join, on_leave)
        follows `path` on every sibling while watched (`watch()`/`unwatch()`), finding
        new siblings every `SCAN_EVERY` seconds; nothing is opened while nobody watches

What the sockets answer is `api/peer_app.py`; this module knows nothing of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from alyx_server.tools.processes import run_dir

__all__ = [
    "CALL_TIMEOUT",
    "SCAN_EVERY",
    "Peer",
    "PeerAnswer",
    "PeerFollower",
    "PeerGone",
    "Peers",
    "parse_socket_name",
    "socket_name",
]

log = logging.getLogger("alyx.peers")

CALL_TIMEOUT = 2.0
SCAN_EVERY = 1.0
_PREFIX, _SUFFIX = "peer-", ".sock"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
_URL = "http://peer"  # the host part is ignored on a Unix socket
_STREAM_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=CALL_TIMEOUT)


def socket_name(worker: str, pid: int) -> str:
    """`peer-<worker>-<pid>.sock`; characters a file name should not hold become `_`."""
    return f"{_PREFIX}{_UNSAFE.sub('_', worker) or '_'}-{pid}{_SUFFIX}"


def parse_socket_name(name: str) -> tuple[str, int] | None:
    """(worker, pid) of a peer socket's file name, or None for any other file."""
    if not (name.startswith(_PREFIX) and name.endswith(_SUFFIX)):
        return None
    worker, _, pid = name[len(_PREFIX) : -len(_SUFFIX)].rpartition("-")
    if not worker or not pid.isdigit():
        return None
    return worker, int(pid)


@dataclass(frozen=True, slots=True)
class Peer:
    """One process's socket as found in the run directory (`inode`: which file it was)."""

    worker: str
    pid: int
    path: Path
    inode: int = 0


@dataclass(frozen=True, slots=True)
class PeerAnswer:
    """A sibling's answer: its status and JSON body, or `error` when it gave none."""

    peer: Peer
    status: int | None
    body: Any = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200


class PeerGone(Exception):
    """The sibling's socket refused the connection: its process is gone (socket removed)."""


def _refused(error: aiohttp.ClientConnectorError) -> bool:
    return isinstance(error.os_error, ConnectionRefusedError | FileNotFoundError)


class Peers:
    """This process's socket and the way to its siblings'; see the module docstring."""

    def __init__(self, database: Path, worker: str, pid: int | None = None) -> None:
        self.folder = run_dir(database, create=False)
        self.database = database
        self.worker = worker
        self.pid = os.getpid() if pid is None else pid
        self.path = self.folder / socket_name(worker, self.pid)
        self._inode: int | None = None

    # -- this process -------------------------------------------------------------------
    def listen(self) -> socket.socket:
        """Bind and listen on this process's socket, then put it in place (see above)."""
        run_dir(self.database)  # creates the folder, or refuses one that is not private
        staging = self.folder / f".{self.path.name}.{os.urandom(4).hex()}"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(str(staging))
            sock.listen(64)
            sock.setblocking(False)
            os.replace(staging, self.path)
        except BaseException:
            sock.close()
            with contextlib.suppress(FileNotFoundError):
                staging.unlink()
            raise
        self._inode = self.path.stat().st_ino
        return sock

    def close(self) -> None:
        """Remove this process's socket (unless another process has taken the name)."""
        if self._inode is None:
            return
        with contextlib.suppress(FileNotFoundError):
            if self.path.stat().st_ino == self._inode:
                self.path.unlink()
        self._inode = None

    # -- siblings ----------------------------------------------------------------------
    def siblings(self) -> list[Peer]:
        """The other processes' sockets in the run directory, by worker name and pid."""
        found: list[Peer] = []
        try:
            entries = list(os.scandir(self.folder))
        except FileNotFoundError:
            return []
        for entry in entries:
            parsed = parse_socket_name(entry.name)
            if parsed is None or entry.name == self.path.name:
                continue
            found.append(Peer(parsed[0], parsed[1], Path(entry.path), entry.inode()))
        found.sort(key=lambda p: (p.worker, p.pid))
        return found

    def remove_stale(self, peer: Peer) -> None:
        """Remove the socket of a process that is gone (the file found, not a newer one)."""
        with contextlib.suppress(FileNotFoundError):
            if not peer.inode or peer.path.stat().st_ino == peer.inode:
                peer.path.unlink()
                log.info("removed the socket of worker %s (pid %d), which is gone", peer.worker, peer.pid)

    @staticmethod
    def session(peer: Peer, timeout: aiohttp.ClientTimeout) -> aiohttp.ClientSession:
        """A client session whose every request goes to `peer`'s socket."""
        return aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(peer.path)), timeout=timeout)

    async def call(
        self, peer: Peer, path: str, payload: Any = None, *, timeout: float = CALL_TIMEOUT
    ) -> PeerAnswer:
        """GET `path` on `peer` (POST `payload` as JSON when given). Raises PeerGone."""
        method = "GET" if payload is None else "POST"
        try:
            async with (
                self.session(peer, aiohttp.ClientTimeout(total=timeout)) as session,
                session.request(method, _URL + path, json=payload) as response,
            ):
                body = await response.json(content_type=None)
                return PeerAnswer(peer, response.status, body)
        except aiohttp.ClientConnectorError as e:
            if _refused(e):
                self.remove_stale(peer)
                raise PeerGone(str(peer.path)) from e
            return PeerAnswer(peer, None, error=str(e))
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            return PeerAnswer(peer, None, error=str(e) or type(e).__name__)

    async def call_all(
        self, path: str, payload: Any = None, *, timeout: float = CALL_TIMEOUT
    ) -> list[PeerAnswer]:
        """`call` every sibling at once; their answers, without the siblings that are gone.

        A sibling that does not answer within `timeout` (seconds) is in the list with
        `status` None and the reason in `error`.
        """
        siblings = self.siblings()
        results = await asyncio.gather(
            *(self.call(peer, path, payload, timeout=timeout) for peer in siblings), return_exceptions=True
        )
        answers: list[PeerAnswer] = []
        for result in results:
            if isinstance(result, PeerAnswer):
                answers.append(result)
            elif not isinstance(result, PeerGone):
                raise result
        return answers

    async def lines(self, peer: Peer, path: str) -> AsyncIterator[bytes]:
        """Each line `peer` streams at `path` until it ends the stream. Raises PeerGone."""
        try:
            async with self.session(peer, _STREAM_TIMEOUT) as session, session.get(_URL + path) as response:
                if response.status != 200:
                    return
                async for line in response.content:
                    if line.strip():
                        yield line.rstrip(b"\n")
        except aiohttp.ClientConnectorError as e:
            if _refused(e):
                self.remove_stale(peer)
                raise PeerGone(str(peer.path)) from e
            log.info("worker %s (pid %d) did not answer: %s", peer.worker, peer.pid, e)
        except aiohttp.ClientError as e:
            log.info("the stream of worker %s (pid %d) ended: %s", peer.worker, peer.pid, e)


class PeerFollower:
    """Follows the line stream at `path` of every sibling while someone watches.

    `on_join(peer)` once its stream is open, `on_line(peer, line)` for each line,
    `on_leave(peer)` when it ends (the sibling stopped or died). A sibling that starts
    later is found by the next scan; the first `watch()` starts the scans, the last
    `unwatch()` stops them and closes every stream.
    """

    def __init__(
        self,
        peers: Peers,
        path: str,
        on_line: Callable[[Peer, bytes], None],
        on_join: Callable[[Peer], None],
        on_leave: Callable[[Peer], None],
        *,
        scan_every: float = SCAN_EVERY,
    ) -> None:
        self.peers = peers
        self.path = path
        self.on_line, self.on_join, self.on_leave = on_line, on_join, on_leave
        self.scan_every = scan_every
        self.watchers = 0
        self.streams: dict[Path, asyncio.Task[None]] = {}
        self._scanner: asyncio.Task[None] | None = None

    def watch(self) -> None:
        self.watchers += 1
        if self._scanner is None:
            self._scanner = asyncio.get_running_loop().create_task(self._scan(), name="alyx-peer-scan")

    async def unwatch(self) -> None:
        self.watchers = max(0, self.watchers - 1)
        if not self.watchers:
            await self.close()

    async def close(self) -> None:
        """Stop scanning and close every stream."""
        tasks = [t for t in (self._scanner, *self.streams.values()) if t is not None]
        self._scanner = None
        self.streams.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _scan(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            for peer in self.peers.siblings():
                if peer.path not in self.streams:
                    self.streams[peer.path] = loop.create_task(self._follow(peer), name="alyx-peer-stream")
            await asyncio.sleep(self.scan_every)

    async def _follow(self, peer: Peer) -> None:
        joined = False
        try:
            async for line in self.peers.lines(peer, self.path):
                if not joined:
                    joined = True
                    self.on_join(peer)
                self.on_line(peer, line)
        except PeerGone:
            pass
        finally:
            if self.streams.get(peer.path) is asyncio.current_task():
                del self.streams[peer.path]
            if joined:
                self.on_leave(peer)
