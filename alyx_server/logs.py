"""Logging set-up from `logging.level` and `logging.format` (console lines or JSON lines).

Everything Alyx logs goes through loggers under `alyx.` (`alyx.access` has one line per
HTTP request). The access line is logged as `ACCESS_FORMAT % (ip, method, path, status,
ms, request_id)`; the JSON formatter turns those same arguments into named keys, so the
request path pays for no extra dictionary when the console format is in use.

A log line is one entry, whatever a client sends: the console format escapes control
characters (C0, DEL, C1, U+2028/2029, bidirectional overrides) in the message, so a
request path holding `%0A` and a forged entry stays on its request's line as `\\n`; an
exception's traceback keeps its lines, each indented under its entry. JSON lines escape
the same characters (orjson escapes C0; the rest are escaped here).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from typing import IO, Any

import orjson

from alyx_server.config import LoggingSettings

__all__ = [
    "ACCESS_FIELDS",
    "ACCESS_FORMAT",
    "ACCESS_LOGGER",
    "AccessLog",
    "BufferedStreamHandler",
    "ConsoleFormatter",
    "JsonFormatter",
    "configure_logging",
    "one_line",
]

ACCESS_LOGGER = "alyx.access"
ACCESS_FORMAT = "%s %s %s %d %.2fms %s"
ACCESS_FIELDS = ("ip", "method", "path", "status", "ms", "request_id")

_LINE_BREAKERS = [*range(0x00, 0x20), *range(0x7F, 0xA0), 0x2028, 0x2029, *range(0x202A, 0x202F)]
_LINE_BREAKERS += range(0x2066, 0x206A)
_CONSOLE_ESCAPES = {c: f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}" for c in _LINE_BREAKERS}
_CONSOLE_ESCAPES.update({0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"})
# JSON strings: what orjson leaves as is (it escapes C0, quotes and backslashes itself).
_JSON_ESCAPES = {c: f"\\u{c:04x}" for c in _LINE_BREAKERS if c >= 0x7F}

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
_MARK = "_alyx_handler"


def one_line(text: str) -> str:
    """`text` with every control and line-breaking character escaped (`\\n`, `\\x1b`, ...)."""
    return text if text.isprintable() else text.translate(_CONSOLE_ESCAPES)


def _json_line(text: str) -> str:
    return text if text.isascii() else text.translate(_JSON_ESCAPES)


class ConsoleFormatter(logging.Formatter):
    """`2026-01-31 12:00:00,123 INFO alyx.access 127.0.0.1 GET /api/... 200 0.41ms <id>`.

    The message is escaped to one line (`one_line`); a traceback follows it indented by
    two spaces, so that only an entry's first line starts at the left margin.
    """

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")
        self._second = -1
        self._stamp = ""

    def format(self, record: logging.LogRecord) -> str:
        # Not logging's cached `exc_text`: another handler may have formatted it unindented.
        record.message = one_line(record.getMessage())
        record.asctime = self.formatTime(record)
        line = self.formatMessage(record)
        if record.exc_info:
            line += "\n" + _indented(self.formatException(record.exc_info))
        elif record.exc_text:
            line += "\n" + _indented(record.exc_text)
        if record.stack_info:
            line += "\n" + _indented(self.formatStack(record.stack_info))
        return line

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return self._time(record.created)

    def _time(self, created: float) -> str:
        # strftime once per second, not once per line: the access log writes thousands.
        second = int(created)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime(self.default_time_format, self.converter(created))
        return f"{self._stamp},{int((created - second) * 1000):03d}"

    def access_line(self, created: float, args: tuple[Any, ...]) -> str:
        """The line `format` gives an INFO access record made at `created` with `args`."""
        return f"{self._time(created)} INFO {ACCESS_LOGGER} {one_line(ACCESS_FORMAT % args)}"


def _indented(text: str) -> str:
    lines = text.split("\n")
    return "\n".join("  " + one_line(line) for line in lines)


class BufferedStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that writes lines in batches: at most `delay` seconds late.

    One write per request would cost a system call per request. Lines are kept in order;
    a record at WARNING or above, a full buffer, `flush()` and `close()` (the logging
    module's exit hook calls both) write everything held at once.
    """

    def __init__(self, stream: IO[str], *, delay: float = 0.2, capacity: int = 512) -> None:
        super().__init__(stream)
        self._lines: list[str] = []
        self._capacity = capacity
        self._delay = delay
        self._wake = threading.Event()
        self._closed = False
        self._flusher = threading.Thread(target=self._flush_often, name="alyx-log-flush", daemon=True)
        self._flusher.start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        with self.lock:  # type: ignore[union-attr]
            self._lines.append(line)
            full = len(self._lines) >= self._capacity
        if full or record.levelno >= logging.WARNING:
            self.flush()

    def emit_access(self, created: float, args: tuple[Any, ...]) -> bool:
        """Buffer an access line without a LogRecord; False when the formatter can't."""
        formatter = self.formatter
        if self.filters or type(formatter) not in _ACCESS_FORMATTERS:
            return False
        line = formatter.access_line(created, args)  # type: ignore[union-attr]
        with self.lock:  # type: ignore[union-attr]
            lines = self._lines
            lines.append(line)
        if len(lines) >= self._capacity:
            self.flush()
        return True

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            lines, self._lines = self._lines, []
            if lines:
                # A stream already gone (a closed pipe at exit) has nobody left to tell.
                with contextlib.suppress(OSError, ValueError):
                    self.stream.write("\n".join(lines) + "\n")
            super().flush()

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        self.flush()
        super().close()

    def _flush_often(self) -> None:
        while not self._closed:
            self._wake.wait(self._delay)
            self.flush()


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (UTC), level, logger, message, and the access fields."""

    converter = staticmethod(time.gmtime)

    def format(self, record: logging.LogRecord) -> str:
        args = record.args
        access = record.name == ACCESS_LOGGER and isinstance(args, tuple) and len(args) == len(ACCESS_FIELDS)
        out = self._fields(record.created, record.levelname.lower(), record.name, record.getMessage(),
                           args if access else None)  # type: ignore[arg-type]  # fmt: skip
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return _json_line(orjson.dumps(out, default=str).decode())

    def access_line(self, created: float, args: tuple[Any, ...]) -> str:
        """The line `format` gives an INFO access record made at `created` with `args`."""
        out = self._fields(created, "info", ACCESS_LOGGER, ACCESS_FORMAT % args, args)
        return _json_line(orjson.dumps(out, default=str).decode())

    def _fields(
        self, created: float, level: str, name: str, message: str, access: tuple[Any, ...] | None
    ) -> dict[str, Any]:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", self.converter(created))
        out: dict[str, Any] = {
            "ts": f"{stamp}.{int((created - int(created)) * 1000):03d}Z",
            "level": level,
            "logger": name,
            "message": message,
        }
        if access is not None:
            out.update(zip(ACCESS_FIELDS, access, strict=True))
            out["ms"] = round(float(out["ms"]), 2)
        return out


_ACCESS_FORMATTERS = (ConsoleFormatter, JsonFormatter)


class AccessLog:
    """Writes the access line; straight into the handler's buffer when nobody else listens.

    Through `logging` a line costs a LogRecord, the handler chain and a lock: 14.8 µs
    per request measured (docs/benchmarks.md), against about 2 µs to format it directly.
    The direct path is taken only when the line would reach exactly one handler, the one
    `configure_logging` installed, with no filters anywhere: the output is the same line.
    Anything else (a test's capture handler, a filter, propagation to root handlers)
    goes through `logging.Logger.info` as usual.
    """

    __slots__ = ("_alyx", "_logger")

    def __init__(self) -> None:
        self._logger = logging.getLogger(ACCESS_LOGGER)
        self._alyx = logging.getLogger("alyx")

    def enabled(self) -> bool:
        return self._logger.isEnabledFor(logging.INFO)

    def __call__(self, ip: str, method: str, path: str, status: int, ms: float, request_id: str) -> None:
        logger = self._logger
        if not logger.isEnabledFor(logging.INFO):
            return
        args = (ip, method, path, status, ms, request_id)
        handler = self._only_handler()
        if handler is None or not handler.emit_access(time.time(), args):
            logger.info(ACCESS_FORMAT, *args)

    def _only_handler(self) -> BufferedStreamHandler | None:
        logger, alyx = self._logger, self._alyx
        if logger.handlers or logger.filters or not logger.propagate or alyx.filters:
            return None
        if alyx.propagate and logging.root.handlers:
            return None
        handlers = alyx.handlers
        if len(handlers) != 1:
            return None
        handler = handlers[0]
        if type(handler) is not BufferedStreamHandler or handler.level > logging.INFO:
            return None
        return handler


def configure_logging(
    settings: LoggingSettings, *, stream: IO[str] | None = None, buffered: bool = True
) -> None:
    """Send the `alyx` loggers to `stream` (stderr) at the configured level and format.

    Calling it again replaces the handler it installed before (a reloaded configuration).
    `buffered=False` writes each line at once and starts no thread: what the supervisor
    of `alyx serve --workers` uses, since it forks workers later (alyx_server/workers).
    """
    logger = logging.getLogger("alyx")
    logger.setLevel(_LEVELS[settings.level])
    for old in list(logger.handlers):
        if getattr(old, _MARK, False):
            logger.removeHandler(old)
            old.close()
    out = stream or sys.stderr
    handler = BufferedStreamHandler(out) if buffered else logging.StreamHandler(out)
    setattr(handler, _MARK, True)
    handler.setFormatter(JsonFormatter() if settings.format == "json" else ConsoleFormatter())
    logger.addHandler(handler)
    _skip_unused_record_fields()


def _skip_unused_record_fields() -> None:
    """Spare every log record the caller lookup and the thread and process names.

    Neither formatter shows them, and the access log writes one record per request: the
    logging documentation's own "optimization" advice. Process-wide, set by the server
    entry point only.
    """
    logging._srcfile = None  # no findCaller() stack walk
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
