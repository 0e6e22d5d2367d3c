"""The long-lived Python executor: runs one function, one request at a time, over stdio.

    python executor.py <function name> <path of its .py file> [<internal API url>]

It loads the function, warms up (below), writes one line `{"type": "ready", "warm": bool}`
(or `{"type": "ready", "error": {message, file, line}}` and exits when the module cannot
load), then answers every JSON line on stdin,

    {"request_id", "function", "input", "context": {auth, env, alyx_url, internal_token}}

with one JSON line on stdout:

    {"request_id", "success": true, "output", "logs"}
    {"request_id", "success": false, "error": {code, message, details, stack}, "logs"}

Anything the function prints goes into its `logs`; the protocol keeps private copies of
stdin and stdout, so a function writing to file descriptor 1 cannot corrupt it.

The warm-up: before it says it is ready, the executor runs its own invoke path
`WARM_UP_ROUNDS` times with a built-in handler that calls the internal API's `ping` (no
token, touches nothing), so the first real call does not pay for the first use of the
event loop, the socket client and the JSON paths. The function's own handler is never
run. `warm` in the ready line says whether the ping was answered.
"""

from __future__ import annotations

import asyncio
import contextvars
import importlib.util
import io
import json
import os
import sys
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any, BinaryIO, TextIO, cast

sys.path.insert(0, str(Path(__file__).resolve().parent))

from alyx_functions import (
    AlyxError,
    Context,
    FunctionDefinition,
    Logger,
    call_handler,
    define_function,
    make_context,
)
from alyx_functions._http import InternalApi

__all__ = ["main"]

_CURRENT_LOG: contextvars.ContextVar[Logger | None] = contextvars.ContextVar("alyx_log", default=None)


class _PrintCapture(io.TextIOBase):
    """sys.stdout during an invocation: each printed line becomes an `info` log line."""

    def __init__(self, fallback: TextIO) -> None:
        self._fallback = fallback
        self._pending = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        log = _CURRENT_LOG.get()
        if log is None:
            return self._fallback.write(text)
        self._pending += text
        while "\n" in self._pending:
            line, self._pending = self._pending.split("\n", 1)
            log.info(line)
        return len(text)

    def flush(self) -> None:
        log = _CURRENT_LOG.get()
        if log is not None and self._pending:
            log.info(self._pending)
            self._pending = ""


def _private_stdio() -> tuple[BinaryIO, BinaryIO]:
    """Private copies of fds 0 and 1; fd 0 becomes /dev/null and fd 1 goes to stderr."""
    proto_in = os.fdopen(os.dup(0), "rb")
    proto_out = os.fdopen(os.dup(1), "wb", buffering=0)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    sys.stdout = cast(TextIO, _PrintCapture(sys.stderr))
    return proto_in, proto_out


def _send(out: BinaryIO, message: dict[str, Any]) -> None:
    out.write(json.dumps(message, separators=(",", ":"), default=_fallback_json).encode() + b"\n")


def _fallback_json(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        import base64

        return base64.b64encode(bytes(value)).decode("ascii")
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _load(name: str, file: str) -> FunctionDefinition:
    spec = importlib.util.spec_from_file_location(f"alyx_function_{name}", file)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {file}")
    module: ModuleType = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    found = [v for v in vars(module).values() if isinstance(v, FunctionDefinition)]
    if len(found) != 1:
        how_many = "no" if not found else f"{len(found)}"
        raise LookupError(
            f"{file} defines {how_many} functions; a module defines exactly one with "
            "define_function(input=..., output=..., handler=...)"
        )
    return found[0]


def _load_error(error: BaseException, file: str) -> dict[str, Any]:
    line: int | None = None
    if isinstance(error, SyntaxError) and error.filename == file:
        line = error.lineno
    else:
        for frame in traceback.extract_tb(error.__traceback__):
            if frame.filename == file:
                line = frame.lineno
    message = "".join(traceback.format_exception_only(type(error), error)).strip()
    return {"message": message, "file": file, "line": line}


def _error(error: BaseException, file: str) -> dict[str, Any]:
    stack = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    if isinstance(error, AlyxError):
        return {"code": error.code, "message": error.message, "details": error.details, "stack": stack}
    message = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    return {"code": "FUNCTION_ERROR", "message": message, "details": [], "stack": stack}


async def _invoke(definition: FunctionDefinition, request: dict[str, Any], file: str) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    ctx: Context = make_context(request, loop)
    token = _CURRENT_LOG.set(ctx.log)
    answer: dict[str, Any] = {"request_id": request.get("request_id")}
    try:
        output = await call_handler(definition, request.get("input") or {}, ctx)
        sys.stdout.flush()
        json.dumps(output, default=_fallback_json)
        answer.update(success=True, output=output)
    except Exception as e:
        sys.stdout.flush()
        answer.update(success=False, error=_error(e, file))
    finally:
        _CURRENT_LOG.reset(token)
    answer["logs"] = ctx.log.lines
    return answer


WARM_UP_ROUNDS = 2
WARM_UP_SECONDS = 2.0  # a server too busy to answer in time does not hold the start back


async def _warm_up(url: str, file: str) -> bool:
    """Run the invoke path with a built-in handler that pings the internal API."""

    async def ping(data: dict[str, Any], ctx: Context) -> bool:
        ctx.log.info("warm-up")
        answer = await InternalApi(url, "").post("ping", {})
        return isinstance(answer, dict) and answer.get("ok") is True

    warmer = define_function(handler=ping)
    answer: dict[str, Any] = {}
    for round_ in range(WARM_UP_ROUNDS):
        request = {"request_id": f"warm-up-{round_}", "input": {}, "context": {"alyx_url": url}}
        answer = await _invoke(warmer, request, file)
        json.dumps(answer, default=_fallback_json)
        if not answer.get("success"):
            return False  # no internal API here: warming further is useless
    return answer.get("output") is True


def _warm(loop: asyncio.AbstractEventLoop, url: str | None, file: str) -> bool:
    if url is None:
        return False
    try:
        return loop.run_until_complete(asyncio.wait_for(_warm_up(url, file), WARM_UP_SECONDS))
    except Exception:
        return False


def main(argv: list[str]) -> int:
    """Serve requests for the function named in `argv` until stdin closes."""
    if len(argv) not in (3, 4):
        print("usage: executor.py <function name> <file.py> [<internal API url>]", file=sys.stderr)
        return 2
    name, file = argv[1], argv[2]
    url = argv[3] if len(argv) == 4 else None
    proto_in, proto_out = _private_stdio()
    try:
        definition = _load(name, file)
    except BaseException as e:
        _send(proto_out, {"type": "ready", "error": _load_error(e, file)})
        return 1
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    _send(proto_out, {"type": "ready", "warm": _warm(loop, url, file)})
    for line in proto_in:
        if not line.strip():
            continue
        request = json.loads(line)
        answer = loop.run_until_complete(_invoke(definition, request, file))
        try:
            _send(proto_out, answer)
        except (TypeError, ValueError) as e:
            answer.pop("output", None)
            answer.update(success=False, error=_error(e, file))
            _send(proto_out, answer)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
