"""The access line: written straight into the handler's buffer, identical to logging's own line."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator

import orjson
import pytest

from alyx_server.config import LoggingSettings
from alyx_server.logs import ACCESS_FORMAT, ACCESS_LOGGER, AccessLog, BufferedStreamHandler, configure_logging

ARGS = ("203.0.113.9", "GET", "/api/collections/posts?limit=2", 200, 0.4172, "rid-1")


@pytest.fixture
def only_alyx_handlers() -> Iterator[None]:
    """No root handlers (pytest's capture adds some), as in `alyx serve`; restored after."""
    root = logging.getLogger()
    saved = list(root.handlers)
    for h in saved:
        root.removeHandler(h)
    try:
        yield
    finally:
        alyx = logging.getLogger("alyx")
        for h in list(alyx.handlers):
            alyx.removeHandler(h)
            h.close()
        alyx.setLevel(logging.NOTSET)
        logging.getLogger(ACCESS_LOGGER).filters.clear()
        for h in saved:
            root.addHandler(h)


def _handler() -> BufferedStreamHandler:
    (handler,) = logging.getLogger("alyx").handlers
    assert isinstance(handler, BufferedStreamHandler)
    return handler


@pytest.mark.parametrize("fmt", ["console", "json"])
def test_direct_line_equals_the_logging_line(only_alyx_handlers: None, fmt: str) -> None:
    stream = io.StringIO()
    configure_logging(LoggingSettings(level="info", format=fmt), stream=stream)  # type: ignore[arg-type]
    handler = _handler()
    for created in (1_790_000_000.0, 1_790_000_000.999, 1_790_000_001.25):
        record = logging.LogRecord(ACCESS_LOGGER, logging.INFO, __file__, 1, ACCESS_FORMAT, ARGS, None)
        record.created, record.msecs = created, int((created - int(created)) * 1000) + 0.0
        assert handler.emit_access(created, ARGS)
        handler.flush()
        assert stream.getvalue().splitlines()[-1] == handler.format(record)


def test_access_log_writes_directly_and_honours_levels_and_filters(only_alyx_handlers: None) -> None:
    stream = io.StringIO()
    configure_logging(LoggingSettings(level="info", format="json"), stream=stream)
    access = AccessLog()
    access(*ARGS)
    _handler().flush()
    line = orjson.loads(stream.getvalue().splitlines()[-1])
    assert line["path"] == "/api/collections/posts?limit=2" and line["ms"] == 0.42
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["ts"])

    # A filter on the access logger is honoured: the line goes through logging and is dropped.
    logging.getLogger(ACCESS_LOGGER).addFilter(lambda record: False)
    before = stream.getvalue()
    access(*ARGS)
    _handler().flush()
    assert stream.getvalue() == before
    logging.getLogger(ACCESS_LOGGER).filters.clear()

    # At level warning there is no access line at all.
    configure_logging(LoggingSettings(level="warning", format="json"), stream=stream)
    assert not access.enabled()
    access(*ARGS)
    _handler().flush()
    assert stream.getvalue() == before


def test_other_listeners_get_the_record(only_alyx_handlers: None) -> None:
    stream = io.StringIO()
    configure_logging(LoggingSettings(level="info", format="console"), stream=stream)
    capture = io.StringIO()
    listener = logging.StreamHandler(capture)
    logging.getLogger().addHandler(listener)
    try:
        AccessLog()(*ARGS)
    finally:
        logging.getLogger().removeHandler(listener)
    _handler().flush()
    assert capture.getvalue().strip() == ACCESS_FORMAT % ARGS
    assert stream.getvalue().rstrip().endswith("INFO alyx.access " + ACCESS_FORMAT % ARGS)
