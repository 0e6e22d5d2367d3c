"""A request cannot forge log entries: against a real `alyx dev` process, a path holding an
encoded newline and a fake access line, a terminal escape, NEL and U+2028 stays one
escaped line of the server's log, in the console and in the JSON format."""

from __future__ import annotations

import io
import logging
import socket
from pathlib import Path
from urllib.parse import urlsplit

import orjson
import pytest

from alyx_server.config import LoggingSettings
from alyx_server.logs import configure_logging
from tests.alyx_cli.test_serve import Server, environment, project, servers, start

__all__ = ["project", "servers"]

FORGED = "2026-12-06 21:00:00,000 INFO alyx.access 203.0.113.9 DELETE /api/admin/users/all 204 0.10ms x"
# What the attacker sends: the forged entry after %0A, a CR, an ANSI colour code, NEL and LS.
ATTACK = "/api/collections/notes%0A" + FORGED.replace(" ", "%20") + "%0D%1B[31mred%C2%85nel%E2%80%A8ls"
DECODED = "/api/collections/notes\n" + FORGED + "\r\x1b[31mred\x85nel\u2028ls"
ESCAPED = "/api/collections/notes\\n" + FORGED + "\\r\\x1b[31mred\\x85nel\\u2028ls"


def send_raw(url: str, target: str) -> bytes:
    """One HTTP/1.1 request with `target` exactly as written; the status line answered."""
    parts = urlsplit(url)
    assert parts.hostname and parts.port
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as conn:
        request = f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nConnection: close\r\n\r\n"
        conn.sendall(request.encode("ascii"))
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    return answer.split(b"\r\n", 1)[0]


def attack(project_server: Server) -> list[str]:
    """Send the attack, stop the server; the lines of its log (stderr)."""
    assert send_raw(project_server.url, ATTACK) == b"HTTP/1.1 404 Not Found"
    assert project_server.stop() == 0
    return project_server.stderr.splitlines()


def test_a_forged_access_line_stays_escaped_in_the_console_log(project: Path, servers: list[Server]) -> None:
    server = start(project, "dev", "--no-watch")
    servers.append(server)
    lines = attack(server)
    mine = [line for line in lines if "DELETE /api/admin/users/all" in line]
    assert len(mine) == 1, lines
    [line] = mine
    assert " INFO alyx.access 127.0.0.1 GET " + ESCAPED + " 404 " in line
    assert not any(line.startswith(FORGED) or "\x1b" in line or "\x85" in line for line in lines)
    assert not any("\u2028" in line for line in lines)


def test_a_forged_access_line_stays_one_json_line(project: Path, servers: list[Server]) -> None:
    server = start(project, "dev", "--no-watch", env=environment(ALYX_LOGGING_FORMAT="json"))
    servers.append(server)
    lines = attack(server)
    mine = [line for line in lines if "/api/admin/users/all" in line]
    assert len(mine) == 1, lines
    [line] = mine
    # Every line-breaking character is an escape in the text itself, not only in JSON's sense.
    assert line.isascii() and line.isprintable()
    entry = orjson.loads(line)
    assert (entry["logger"], entry["path"], entry["status"]) == ("alyx.access", DECODED, 404)


@pytest.mark.parametrize("fmt", ["console", "json"])
def test_an_unhandled_error_names_the_path_on_one_line(fmt: str) -> None:
    """Other lines that embed a client's value (the path of a request that failed)."""
    stream = io.StringIO()
    configure_logging(LoggingSettings(level="info", format=fmt), stream=stream)  # type: ignore[arg-type]
    logger = logging.getLogger("alyx.errors")
    try:
        raise ValueError("bad value\n" + FORGED)
    except ValueError:
        logger.exception("unhandled error in %s %s (request %s)", "GET", DECODED, "rid")
    alyx = logging.getLogger("alyx")
    for handler in list(alyx.handlers):
        handler.flush()
        alyx.removeHandler(handler)
        handler.close()
    alyx.setLevel(logging.NOTSET)
    lines = stream.getvalue().splitlines()
    # Only the entry's first line starts at the left margin: the traceback is indented.
    assert [line for line in lines if not line.startswith(" ")] == lines[:1]
    assert not any(line.startswith(FORGED) for line in lines)
    if fmt == "json":
        assert len(lines) == 1 and lines[0].isascii()
        entry = orjson.loads(lines[0])
        assert entry["message"] == f"unhandled error in GET {DECODED} (request rid)"
        assert entry["exception"].endswith("ValueError: bad value\n" + FORGED)
    else:
        assert lines[0].endswith(f"ERROR alyx.errors unhandled error in GET {ESCAPED} (request rid)")
        assert lines[-1] == "  " + FORGED
