"""Schemathesis against the live `/api/openapi.json`: every operation, three callers.

`alyx dev` runs as a real process on a free loopback port, serving a project whose
schema has every field type, references (to a collection and to `_alyx_users.id`), an
enum, nullable fields, validation options, a unique field, an internal field, an integer
primary key and `"true"` rules on every collection.

Schemathesis generates calls for every operation of the document (examples, coverage
and fuzzing phases, positive and negative data; the hypothesis profile bounds how many)
and sends each as an anonymous caller, as a signed-in user and with an admin token
(which bypasses rules). The checks: no 5xx ever, and every answer is what the document
says (status code listed, content type, body schema). The server's log must hold no
traceback at the end.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from click.testing import CliRunner
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from alyx_cli.main import cli
from alyx_server.api.openapi import openapi_document
from alyx_server.schema.loader import parse_schema
from tests.alyx_server.api.projects import write_project

SCHEMA_YAML = """\
version: 1
collections:
  authors:
    fields:
      id:      { type: uuid, primary: true, default: auto }
      name:    { type: string, minLength: 1, maxLength: 50 }
      email:   { type: string, unique: true, nullable: true, format: email }
      site:    { type: string, nullable: true, format: url }
      owner:   { type: uuid, references: _alyx_users.id, nullable: true, onDelete: set null }
      secret:  { type: string, nullable: true, internal: true }
    rules: { create: "true", read: "true", update: "true", delete: "true" }
  posts:
    fields:
      id:         { type: uuid, primary: true, default: auto }
      title:      { type: string, minLength: 1, maxLength: 200 }
      slug:       { type: string, unique: true, nullable: true, pattern: "^[a-z0-9-]+$" }
      body:       { type: text, default: "" }
      status:     { type: string, enum: [draft, published, archived], default: draft }
      author_id:  { type: uuid, references: authors.id, nullable: true, onDelete: restrict, index: true }
      views:      { type: int, default: 0, min: 0, max: 1000000 }
      rating:     { type: float, nullable: true, min: 0, max: 5 }
      published:  { type: bool, default: false }
      tags:       { type: json, nullable: true }
      cover:      { type: blob, nullable: true }
      ref_uuid:   { type: string, nullable: true, format: uuid }
      due:        { type: timestamp, nullable: true }
      created_at: { type: timestamp, default: now }
      updated_at: { type: timestamp, default: now, onUpdate: now }
    rules: { create: "true", read: "true", update: "true", delete: "true" }
  counters:
    fields:
      id:    { type: int, primary: true, default: auto }
      label: { type: string, nullable: true, maxLength: 20 }
      n:     { type: int, nullable: true }
    rules: { create: "true", read: "true", update: "true", delete: "true" }
"""

# Fast hashing and no rate limits, so that the generated calls reach the handlers.
ALYX_YAML = """\
auth:
  bcrypt_cost: 4
  rate_limit: { login: "off", register: "off", reset: "off" }
"""
PASSWORD = "correct horse battery"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


class LiveServer:
    """`alyx dev` on a free loopback port, as a real process of its own."""

    def __init__(self, project: Path) -> None:
        self.project = project
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = project.parent / "server.log"
        self.process: subprocess.Popen[bytes] | None = None
        # One keep-alive session for every call: a connection per call would cost more
        # than most calls.
        self.session = requests.Session()

    def start(self) -> None:
        alyx = Path(sys.executable).with_name("alyx")
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [str(alyx), "dev", "--no-watch", "-p", str(self.port), "-C", str(self.project)],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        for _ in range(600):
            if self.process.poll() is not None:
                raise AssertionError(f"alyx dev exited:\n{self.log.read_text()}")
            with contextlib.suppress(requests.ConnectionError):
                if self.session.get(f"{self.url}/health/ready", timeout=5).status_code == 200:
                    return
            time.sleep(0.1)
        raise AssertionError(f"alyx dev did not get ready:\n{self.log.read_text()}")

    def stop(self) -> None:
        self.session.close()
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)

    def tracebacks(self) -> list[str]:
        """The server's log lines that start a traceback (every 500 logs one)."""
        return [line for line in self.log.read_text().splitlines() if line.startswith("Traceback")]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    root = write_project(tmp_path_factory.mktemp("fuzz") / "project", SCHEMA_YAML)
    (root / "alyx.yaml").write_text(ALYX_YAML, encoding="utf-8")
    server = LiveServer(root)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def tokens(live: LiveServer) -> dict[str, str]:
    """A signed-in user's access token and an admin token, by caller name."""
    answer = live.session.post(
        f"{live.url}/api/auth/register",
        json={"email": "fuzz-user@example.com", "password": PASSWORD},
        timeout=30,
    )
    assert answer.status_code == 201, answer.text
    result = CliRunner().invoke(cli, ["admin", "create-token", "--name", "fuzz", "-C", str(live.project)])
    assert result.exit_code == 0, result.output
    return {"user": answer.json()["tokens"]["access_token"], "admin": result.stdout.strip()}


# Built from the same schema as the server's; `test_the_live_document_is_the_one_tested`
# checks that the server publishes exactly this document. (Schemathesis' lazy loader,
# which would read it from the server, does not run on pytest 9.)
DOCUMENT = openapi_document(parse_schema(SCHEMA_YAML))
schema = schemathesis.openapi.from_dict(DOCUMENT)


def test_the_live_document_is_the_one_tested(live: LiveServer) -> None:
    answer = live.session.get(f"{live.url}/api/openapi.json", timeout=30)
    assert answer.status_code == 200
    assert answer.json() == DOCUMENT


@pytest.mark.parametrize("caller", ["anonymous", "user", "admin"])
@schema.parametrize()
def test_every_operation_conforms(case: Any, live: LiveServer, tokens: dict[str, str], caller: str) -> None:
    """`case` sent as `caller`: no 5xx, and the answer is what the document says."""
    token = tokens.get(caller)
    headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    case.headers = headers
    case.call_and_validate(base_url=live.url, checks=CHECKS, session=live.session)


def test_the_server_logged_no_traceback(live: LiveServer) -> None:
    assert live.tracebacks() == []
