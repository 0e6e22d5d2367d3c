"""A deploy switches every worker together: the other processes serving the database hold
their schema gates while the executing process commits, then take the new version.

With `alyx serve --workers N` (or several `alyx serve` on one project), the process that
executes a deploy or rollback is one of several. The others serve the old schema from
the same database file; between the commit of a migration and their swap, a request of
theirs could meet a table its schema does not describe. So the executing process
(api/deploy.py):

    stage    sends every sibling, through the peer sockets (api/peers.py), the schema.yaml
             being deployed; each parses it and compiles its rules (off its event loop,
             its gate still open) and keeps it for the hold
    hold     then every gate closes at once: each sibling takes its gate's exclusive side
             while the executing process takes its own (requests in flight finish on the
             old schema, new ones wait), so the pause is the slowest drain, not the sum of
             the siblings' and the executor's; a gate that cannot close within the drain
             timeout refuses the deploy with nothing changed (every gate opens again, the
             siblings are released)
    swap     after the commit, alongside its own schema swap: each sibling swaps in the
             schema it staged (its references only: schema, rules, realtime queries)
             and opens its gate; one that could not stage it reads schema.yaml from
             disk (the files are in place by then). The executing process opens its own
             gate as soon as its own swap is done, then waits for the siblings' answers
    finish   with its own gate open, after the executing process took them, one sibling
             at a time: each lets the requests that waited at its gate finish
             (Gate.settle, at most SETTLE_LIMIT), then takes the changed functions
             (fresh pools) and the alyx.yaml keys the deploy set
    release  on any failure: the siblings read schema.yaml again (unchanged when the
             failure came before the commit) and open their gates

A deploy that only adds (deploy.plan.requests_pause) skips the hold: the siblings stage,
the executing process commits, and each swaps with its gate open all along.

No worker serves a request on the old schema after the commit: every gate was closed
before it, and each opens only once its process serves the new schema.

A sibling whose executor vanishes (killed between hold and swap) opens its gate after
HOLD_LIMIT seconds by itself, reading schema.yaml again in case the commit happened; a
SIGHUP (rolling restart) puts every worker on the deployed version in any case.

A process alone (no sibling socket in the run directory) skips all of this.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from alyx_server.api.admin import PEERS
from alyx_server.api.admin_live import (
    StagedSchema,
    reload_functions,
    reload_schema,
    reload_settings,
    stage_schema,
    swap_staged_schema,
)
from alyx_server.api.peers import PeerAnswer, PeerGone
from alyx_server.api.pipeline import HTTP_POLICY, json_response
from alyx_server.api.realtime import REALTIME
from alyx_server.api.runtime import RUNTIME
from alyx_server.deploy.execute import with_config
from alyx_server.deploy.store import DeployInProgress
from alyx_server.schema.loader import parse_schema
from alyx_server.tools.gate import Gate, GateTimeout

__all__ = [
    "FINISH_PATH",
    "HOLD_LIMIT",
    "HOLD_PATH",
    "RELEASE_PATH",
    "SETTLE_LIMIT",
    "STAGE_PATH",
    "SWAP_PATH",
    "SiblingHold",
    "add_peer_routes",
    "hold_siblings",
]

log = logging.getLogger("alyx.deploy")

STAGE_PATH = "/peer/v1/deploy/stage"
HOLD_PATH = "/peer/v1/deploy/hold"
SWAP_PATH = "/peer/v1/deploy/swap"
FINISH_PATH = "/peer/v1/deploy/finish"
RELEASE_PATH = "/peer/v1/deploy/release"
HOLD_LIMIT = 120.0
"""Seconds a sibling holds its gate for an executor that never says swap or release."""
_SWAP_TIMEOUT = 60.0
SETTLE_LIMIT = 0.05
"""Seconds a process lets the requests that waited at its gate finish before it starts the
new function pools (their starts would take the cores those requests resume on)."""


# -- the executing process ---------------------------------------------------------------------
@dataclass
class SiblingHold:
    """The siblings holding their gates for one deploy (empty when the process is alone),
    and this process's own gate, closed with theirs (`open_own` opens it)."""

    app: web.Application
    hold_id: str
    peers: list[Any] = field(default_factory=list)
    own: Gate | None = None
    stage_ms: float = 0.0  # how long the siblings took to stage (before any gate closed)
    all_staged: bool = True  # False: one will read schema.yaml from disk at its swap

    def open_own(self) -> None:
        """Open this process's gate (once it serves the new schema, or on a failure)."""
        own, self.own = self.own, None
        if own is not None:
            own.open()

    async def swap(self, *, revalidate_all: bool = False) -> None:
        """Every holding sibling swaps to the schema it staged (or, failing that, the one
        now on disk) and opens its gate."""
        await self._each(SWAP_PATH, {"hold_id": self.hold_id, "revalidate_all": revalidate_all})

    async def finish(
        self, functions: Sequence[str], config: Mapping[str, object], reset: Sequence[str]
    ) -> None:
        """Every sibling takes the changed functions and the deployed alyx.yaml keys."""
        payload = {"functions": list(functions), "config": dict(config), "reset": list(reset)}
        for peer in list(self.peers):  # one at a time: new pools' starts take a core each
            await self._each(FINISH_PATH, payload, [peer])

    async def release(self) -> None:
        await self._each(RELEASE_PATH, {"hold_id": self.hold_id})

    async def _each(self, path: str, payload: dict[str, Any], only: list[Any] | None = None) -> None:
        targets = self.peers if only is None else only
        if not targets:
            return
        peers = self.app[PEERS]
        answers = await asyncio.gather(
            *(peers.call(peer, path, payload, timeout=_SWAP_TIMEOUT) for peer in targets),
            return_exceptions=True,
        )
        for peer, answer in zip(targets, answers, strict=True):
            if not (isinstance(answer, PeerAnswer) and answer.ok) and not isinstance(answer, PeerGone):
                log.error("deploy: worker %s did not answer %s: %s", peer.worker, path, _why(answer))


def _answered(siblings: list[Any], answers: list[Any]) -> tuple[list[Any], list[str]]:
    """The siblings that answered a call well, and why each other failed (one that exited
    meanwhile is neither: nothing of it to hold or swap)."""
    ok: list[Any] = []
    failed: list[str] = []
    for peer, answer in zip(siblings, answers, strict=True):
        if isinstance(answer, PeerAnswer) and answer.ok:
            ok.append(peer)
        elif not isinstance(answer, PeerGone):
            failed.append(f"worker {peer.worker}: {_why(answer)}")
    return ok, failed


def _why(answer: object) -> str:
    if isinstance(answer, PeerAnswer):
        return answer.error or f"status {answer.status}: {answer.body}"
    return repr(answer)


@contextlib.asynccontextmanager
async def hold_siblings(
    app: web.Application,
    timeout: float,
    schema: bytes | None = None,
    own: Gate | None = None,
    *,
    pause: bool = True,
) -> AsyncIterator[SiblingHold]:
    """Have every sibling stage `schema` (the schema.yaml being deployed), then close every
    sibling's gate and `own` (this process's) at once (see the module docstring); `own`
    stays closed until `open_own()` or the end of the block. DeployInProgress, with every
    gate open again and nothing changed, when one cannot close within `timeout`.

    `pause=False` (a plan that only adds, deploy.plan.requests_pause): the siblings stage
    and later swap, but no gate closes; one that could not be asked to stage refuses the
    deploy, nothing changed."""
    hold = SiblingHold(app, uuid.uuid4().hex)
    peers = app.get(PEERS)
    siblings = peers.siblings() if peers is not None else []
    text = schema.decode("utf-8", errors="replace") if schema is not None else None
    pause = pause or text is None  # without the schema to stage, the siblings must pause
    staged: set[int] = set()
    if siblings and text is not None:
        assert peers is not None
        stage = {"hold_id": hold.hold_id, "schema": text}
        started = time.perf_counter()
        answers = await asyncio.gather(
            *(peers.call(peer, STAGE_PATH, stage, timeout=timeout + 5) for peer in siblings),
            return_exceptions=True,
        )
        staged = {i for i, a in enumerate(answers) if isinstance(a, PeerAnswer) and a.ok}
        hold.stage_ms = (time.perf_counter() - started) * 1000
        hold.all_staged = all(
            isinstance(a, PeerAnswer) and a.ok and isinstance(a.body, dict) and a.body.get("staged") is True
            for a in answers
        )
        if not pause:
            # Each swaps after the commit, its gate open all along.
            ready, unstaged = _answered(siblings, list(answers))
            hold.peers.extend(ready)
            if unstaged:
                await hold.release()
                raise DeployInProgress(
                    "nothing was changed: another worker could not take the new schema "
                    f"({'; '.join(unstaged)}); run the command again"
                )
    elif siblings:
        hold.all_staged = False
    if pause:
        await _close_gates(hold, siblings, staged, text, own, timeout)
    try:
        yield hold
    except BaseException:
        hold.open_own()
        await hold.release()
        raise
    finally:
        hold.open_own()


async def _close_gates(
    hold: SiblingHold,
    siblings: list[Any],
    staged: set[int],
    text: str | None,
    own: Gate | None,
    timeout: float,
) -> None:
    """Close every sibling's gate (HOLD; those in `staged` staged already) and `own` at once;
    DeployInProgress, with every gate open again, when one cannot within `timeout`."""
    closing = asyncio.ensure_future(own.close(timeout)) if own is not None else None
    failed: list[str] = []
    own_error: str | None = None
    try:
        if siblings:
            peers = hold.app[PEERS]
            calls = []
            for i, peer in enumerate(siblings):
                payload: dict[str, Any] = {"hold_id": hold.hold_id, "timeout": timeout}
                if text is not None and i not in staged:
                    payload["schema"] = text  # it did not stage: it stages before it holds
                calls.append(peers.call(peer, HOLD_PATH, payload, timeout=timeout + 5))
            answers = await asyncio.gather(*calls, return_exceptions=True)
            held, failed = _answered(siblings, answers)
            hold.peers.extend(held)
        if closing is not None:
            try:
                await closing
                hold.own = own
            except GateTimeout as e:
                own_error = str(e)
    except BaseException:
        if closing is not None:
            closing.cancel()  # a close cancelled midway opens the gate again itself
            with contextlib.suppress(BaseException):
                await closing
                hold.own = own  # it had closed before the cancel
        hold.open_own()
        await hold.release()
        raise
    if failed or own_error is not None:
        hold.open_own()
        await hold.release()
        if own_error is not None:
            raise DeployInProgress(
                f"nothing was changed: {own_error} on the old schema (requests that read or "
                "write documents must finish before the schema is swapped); run the command again"
            )
        raise DeployInProgress(
            "nothing was changed: another worker could not pause its requests on the old "
            f"schema ({'; '.join(failed)}); run the command again"
        )


# -- a sibling ---------------------------------------------------------------------------------
@dataclass
class _Held:
    held: asyncio.Event = field(default_factory=asyncio.Event)
    open: asyncio.Event = field(default_factory=asyncio.Event)
    error: str | None = None
    task: asyncio.Task[None] | None = None
    staged: StagedSchema | None = None


_HOLDS = web.AppKey("alyx.deploy_holds", dict)
_MAIN = web.AppKey("alyx.deploy_peer_main", web.Application)


def _main(request: web.Request) -> web.Application:
    return request.app[_MAIN]


def _holds(app: web.Application) -> dict[str, _Held]:
    holds: dict[str, _Held] | None = app.get(_HOLDS)
    if holds is None:
        holds = {}
        app[_HOLDS] = holds
    return holds


async def _hold_gate(app: web.Application, hold_id: str, entry: _Held, timeout: float) -> None:
    started = time.perf_counter()
    gate = app[HTTP_POLICY].gate
    try:
        async with gate.exclusive(timeout):
            entry.held.set()
            held = time.perf_counter()
            try:
                await _wait_open(app, entry)
            finally:
                log.info(
                    "deploy: held the schema gate %.0f ms (drain %.0f ms, %d requests waiting)",
                    (time.perf_counter() - held) * 1000,
                    (held - started) * 1000,
                    gate.waiting,
                )
    except GateTimeout as e:
        entry.error = str(e)
        entry.held.set()
    finally:
        _holds(app).pop(hold_id, None)


async def _wait_open(app: web.Application, entry: _Held) -> None:
    try:
        await asyncio.wait_for(entry.open.wait(), HOLD_LIMIT)
    except TimeoutError:
        log.error(
            "deploy: the worker executing it did not come back within %.0f s; "
            "serving schema.yaml as it is on disk",
            HOLD_LIMIT,
        )
        await _swap_from_disk(app, revalidate_all=False)


async def _swap_from_disk(app: web.Application, *, revalidate_all: bool) -> None:
    rt = app[RUNTIME]
    path = rt.settings.project_dir / "schema.yaml"
    text = await asyncio.to_thread(path.read_text, encoding="utf-8")
    schema = parse_schema(text)
    reloaded = await reload_schema(app, schema)
    if reloaded.refused:
        log.error("deploy: the schema was not swapped in: %s", reloaded.refused)
    hub = app[REALTIME].hub
    if revalidate_all and hub is not None:
        await hub.revalidate(c.name for c in schema.collections)


def _stage(app: web.Application, text: str) -> StagedSchema | None:
    """The deployed schema made ready to swap in (None when it does not parse or compile
    here: the swap then reads schema.yaml from disk, as a release does)."""
    try:
        return stage_schema(app[RUNTIME].catalog.schema, parse_schema(text))
    except Exception:
        log.exception("deploy: could not stage the new schema; it will be read from disk")
        return None


async def stage(request: web.Request) -> web.StreamResponse:
    """The schema being deployed, parsed and compiled ahead of the hold (the gate open)."""
    app = _main(request)
    body = await request.json()
    hold_id = str(body["hold_id"])
    entry = _Held()
    entry.staged = await asyncio.to_thread(_stage, app, str(body["schema"]))
    holds = _holds(app)
    holds[hold_id] = entry

    def forget() -> None:  # an executor gone before it held: nothing to keep
        if holds.get(hold_id) is entry and entry.task is None:
            holds.pop(hold_id, None)

    asyncio.get_running_loop().call_later(HOLD_LIMIT, forget)
    return json_response({"staged": entry.staged is not None})


async def hold(request: web.Request) -> web.StreamResponse:
    app = _main(request)
    body = await request.json()
    hold_id, timeout = str(body["hold_id"]), float(body["timeout"])
    entry = _holds(app).get(hold_id)
    if entry is None or entry.task is not None:
        entry = _Held()
        text = body.get("schema")
        if isinstance(text, str):
            entry.staged = await asyncio.to_thread(_stage, app, text)
    _holds(app)[hold_id] = entry
    entry.task = asyncio.get_running_loop().create_task(
        _hold_gate(app, hold_id, entry, timeout), name=f"alyx-deploy-hold-{hold_id[:8]}"
    )
    await entry.held.wait()
    if entry.error is not None:
        return json_response({"held": False, "error": entry.error}, status=409)
    return json_response({"held": True})


async def swap(request: web.Request) -> web.StreamResponse:
    """After the commit: the staged schema (or the one on disk) serves; the gate opens."""
    return await _open(request, committed=True)


async def release(request: web.Request) -> web.StreamResponse:
    """On a failure: schema.yaml as it is on disk (unchanged before the commit) serves."""
    return await _open(request, committed=False)


async def _open(request: web.Request, *, committed: bool) -> web.StreamResponse:
    app = _main(request)
    body = await request.json()
    entry = _holds(app).get(str(body["hold_id"]))
    if entry is None:  # opened by itself already (HOLD_LIMIT)
        return json_response({"swapped": False, "error": "no such hold"}, status=404)
    started = time.perf_counter()
    revalidate_all = bool(body.get("revalidate_all"))
    try:
        if committed and entry.staged is not None:
            await swap_staged_schema(app, entry.staged)
            hub = app[REALTIME].hub
            if revalidate_all and hub is not None:
                await hub.revalidate(c.name for c in entry.staged.schema.collections)
        else:
            await _swap_from_disk(app, revalidate_all=revalidate_all)
        log.info("deploy: swapped the schema in %.0f ms", (time.perf_counter() - started) * 1000)
    finally:
        entry.open.set()
        if entry.task is not None:
            await entry.task
        else:  # staged for a deploy that paused nothing: no hold to end, only the entry
            _holds(app).pop(str(body["hold_id"]), None)
    return json_response({"swapped": True})


async def finish(request: web.Request) -> web.StreamResponse:
    app = _main(request)
    body = await request.json()
    names = [str(n) for n in body.get("functions") or ()]
    started = time.perf_counter()
    if names:
        await app[HTTP_POLICY].gate.settle(SETTLE_LIMIT)
        await reload_functions(app, names)
        log.info("deploy: took the new functions in %.0f ms", (time.perf_counter() - started) * 1000)
    config, reset = body.get("config") or {}, [str(k) for k in body.get("reset") or ()]
    if config or reset:
        rt = app[RUNTIME]
        new = await asyncio.to_thread(with_config, rt.settings, config, reset)
        await reload_settings(app, new)
    return json_response({"finished": True})


def add_peer_routes(peer: web.Application, main: web.Application) -> None:
    """The deploy routes on a worker's peer application (api/peer_app.py)."""
    peer[_MAIN] = main
    peer.router.add_post(STAGE_PATH, stage)
    peer.router.add_post(HOLD_PATH, hold)
    peer.router.add_post(SWAP_PATH, swap)
    peer.router.add_post(FINISH_PATH, finish)
    peer.router.add_post(RELEASE_PATH, release)
