"""The Alyx functions SDK for Python.

    from alyx_functions import define_function

    async def handler(input, ctx):
        post = await ctx.db.posts.update(input["post_id"], {"published": True})
        ctx.log.info(f"published {post['id']}")
        return {"id": post["id"]}

    publish = define_function(input={"post_id": {"type": "uuid"}}, handler=handler)

A module defines exactly one function. `ctx.auth` is the caller (None when anonymous),
`ctx.env` the manifest's `env`, `ctx.log` collects log lines returned with the answer,
and `ctx.db.<collection>` reads and writes documents as the caller, under the rules.
A plain `def handler` runs on a thread; there `ctx.db` calls return their results
directly instead of awaitables.
"""

from __future__ import annotations

import asyncio
import datetime
import threading
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

from alyx_functions._http import AlyxError, InternalApi

__all__ = [
    "AlyxError",
    "CollectionClient",
    "Context",
    "DatabaseClient",
    "FunctionDefinition",
    "Jobs",
    "Logger",
    "define_function",
]

Handler = Callable[[dict[str, Any], "Context"], Any]


@dataclass(frozen=True)
class FunctionDefinition:
    """What `define_function` returns; the executor finds it among the module's globals."""

    handler: Handler
    input: Mapping[str, Any] = field(default_factory=dict)
    output: Mapping[str, Any] = field(default_factory=dict)


def define_function(
    *,
    handler: Handler,
    input: Mapping[str, Any] | None = None,
    output: Mapping[str, Any] | None = None,
) -> FunctionDefinition:
    """Declare a function: its handler `(input, ctx)` (async or plain) and, for readers and
    code generators, its input and output fields (the manifest's copy is the one enforced)."""
    if not callable(handler):
        raise TypeError("define_function(handler=...) needs a function (input, ctx) -> output")
    return FunctionDefinition(handler=handler, input=dict(input or {}), output=dict(output or {}))


class Logger:
    """`ctx.log.info/warn/error(...)`: lines returned with the invocation's answer."""

    def __init__(self) -> None:
        self.lines: list[dict[str, str]] = []
        self._lock = threading.Lock()

    def _add(self, level: str, parts: tuple[Any, ...]) -> None:
        message = " ".join(p if isinstance(p, str) else repr(p) for p in parts)
        now = datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")
        with self._lock:
            self.lines.append({"level": level, "message": message, "time": now.replace("+00:00", "Z")})

    def debug(self, *parts: Any) -> None:
        self._add("debug", parts)

    def info(self, *parts: Any) -> None:
        self._add("info", parts)

    def warn(self, *parts: Any) -> None:
        self._add("warn", parts)

    warning = warn

    def error(self, *parts: Any) -> None:
        self._add("error", parts)


class _Bridge:
    """Runs the client's coroutines: awaitable on the loop, blocking from a handler thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            return coro
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()


class CollectionClient:
    """`ctx.db.<collection>`: find, get, create, update, delete as the caller."""

    def __init__(self, api: InternalApi, bridge: _Bridge, name: str) -> None:
        self._api = api
        self._bridge = bridge
        self.name = name

    def find(
        self,
        filter: Mapping[str, Any] | list[str] | None = None,
        *,
        sort: str | list[str] | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> Any:
        """Documents matching `filter` (`{"field": value}` or `{"field": {"$op": value}}`)."""
        body: dict[str, Any] = {"collection": self.name}
        for key, value in (("filter", filter), ("sort", sort), ("limit", limit), ("offset", offset)):
            if value is not None:
                body[key] = value
        return self._bridge.run(self._docs(body))

    async def _docs(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        answer = await self._api.post("db/query", body)
        docs: list[dict[str, Any]] = answer["docs"]
        return docs

    def get(self, id: Any) -> Any:
        """The document with this id, or None when it does not exist or is not readable."""
        return self._bridge.run(self._get(id))

    async def _get(self, doc_id: Any) -> dict[str, Any] | None:
        try:
            answer = await self._api.post("db/query", {"collection": self.name, "id": doc_id})
        except AlyxError as e:
            if e.code == "DOCUMENT_NOT_FOUND":
                return None
            raise
        doc: dict[str, Any] = answer["doc"]
        return doc

    def create(self, data: Mapping[str, Any]) -> Any:
        return self._bridge.run(self._exec({"method": "POST", "body": dict(data)}))

    def update(self, id: Any, changes: Mapping[str, Any]) -> Any:
        return self._bridge.run(self._exec({"method": "PATCH", "id": id, "body": dict(changes)}))

    def delete(self, id: Any) -> Any:
        return self._bridge.run(self._exec({"method": "DELETE", "id": id}))

    async def _exec(self, op: dict[str, Any]) -> Any:
        answer = await self._api.post("db/exec", {"collection": self.name, **op})
        return answer["body"]


class DatabaseClient:
    """`ctx.db`: `ctx.db.<collection>` and `ctx.db.transaction([...])`."""

    def __init__(self, api: InternalApi, bridge: _Bridge) -> None:
        self._api = api
        self._bridge = bridge
        self._collections: dict[str, CollectionClient] = {}

    def collection(self, name: str) -> CollectionClient:
        client = self._collections.get(name)
        if client is None:
            client = self._collections[name] = CollectionClient(self._api, self._bridge, name)
        return client

    def __getattr__(self, name: str) -> CollectionClient:
        if name.startswith("_"):
            raise AttributeError(name)
        return self.collection(name)

    def transaction(self, operations: list[Mapping[str, Any]]) -> Any:
        """Apply `[{method, collection, id?, body?}, ...]` atomically; their result bodies.

        Methods: POST (create), PATCH (update), DELETE, GET. If one fails, nothing is
        written and the error names the operation's index.
        """
        return self._bridge.run(self._transaction([dict(op) for op in operations]))

    async def _transaction(self, operations: list[dict[str, Any]]) -> list[Any]:
        if not operations:
            return []
        answer = await self._api.post("db/tx", {"operations": operations})
        return [result["body"] for result in answer["results"]]


class Jobs:
    """`ctx.jobs.enqueue(name, payload, delay=..., dedupe_key=...)`: queue a job (a function
    whose manifest has a `job:` section); returns {"id", "created"}."""

    def __init__(self, api: InternalApi, bridge: _Bridge) -> None:
        self._api = api
        self._bridge = bridge

    def enqueue(
        self,
        name: str,
        payload: Mapping[str, Any] | None = None,
        *,
        delay: float | str | None = None,
        dedupe_key: str | None = None,
    ) -> Any:
        body: dict[str, Any] = {"name": name, "payload": dict(payload or {})}
        if delay is not None:
            body["delay"] = delay
        if dedupe_key is not None:
            body["dedupe_key"] = dedupe_key
        return self._bridge.run(self._api.post("jobs/enqueue", body))


@dataclass
class Context:
    """What a handler gets beside its input; `job` is {id, name, attempt} in a job's run."""

    auth: dict[str, Any] | None
    env: dict[str, str]
    log: Logger
    db: DatabaseClient
    request_id: str
    jobs: Jobs | None = None
    job: dict[str, Any] | None = None
    _internal_token: str = field(repr=False, default="")


def make_context(request: Mapping[str, Any], loop: asyncio.AbstractEventLoop) -> Context:
    """The Context of one protocol request (used by the executor)."""
    context = request.get("context") or {}
    token = str(context.get("internal_token") or "")
    api = InternalApi(str(context.get("alyx_url") or "unix:///alyx/api.sock"), token)
    return Context(
        auth=context.get("auth"),
        env=dict(context.get("env") or {}),
        log=Logger(),
        db=DatabaseClient(api, _Bridge(loop)),
        request_id=str(request.get("request_id", "")),
        jobs=Jobs(api, _Bridge(loop)),
        job=context.get("job"),
        _internal_token=token,
    )


async def call_handler(definition: FunctionDefinition, data: dict[str, Any], ctx: Context) -> Any:
    """Run the handler: awaited when async, on a thread when plain."""
    handler = definition.handler
    if asyncio.iscoroutinefunction(handler):
        return await handler(data, ctx)
    result = await asyncio.to_thread(handler, data, ctx)
    if isinstance(result, Awaitable):
        return await result
    return result
