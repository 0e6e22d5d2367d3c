"""Schemathesis against the live `/api/openapi.json`: every operation, three callers.

`alyx dev` runs as a real process on a free loopback port (tests/servers.py), serving a
project whose schema has every field type (file fields with multipart bodies included),
references (to a collection and to `_alyx_users.id`), an enum, nullable fields, validation
options (a pattern, email and url formats), a unique
field, an internal field, an integer primary key and `"true"` rules on every collection.

The real `schemathesis run` command (Schemathesis 4) runs against it three times: as an
anonymous caller, as a signed-in user and with an admin token (which bypasses rules).
Each run has every check (`--checks all`: no 5xx, status codes, content types, headers
and bodies as documented, schema-valid requests accepted, schema-violating ones refused,
auth that is required is enforced, deleted resources stay gone, ...) and every phase
(examples, coverage, fuzzing and the stateful phase, which chains calls through the links
it infers), with a fixed seed and a bounded number of cases per operation. Any failure
fails the test with Schemathesis' report. What the runs leave out, and why, is in
`SCHEMATHESIS_TOML`. The server's log must hold no traceback at the end.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from alyx_cli.main import cli
from alyx_server.api.openapi import openapi_document
from alyx_server.schema.loader import parse_schema
from tests.alyx_server.api.projects import write_project
from tests.servers import AlyxProcess

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
  uploads:
    fields:
      id:      { type: uuid, primary: true, default: auto }
      label:   { type: string, maxLength: 40, default: "" }
      picture: { type: file, nullable: true, thumbs: [16x16] }
      files:   { type: file, nullable: true, maxFiles: 3 }
    rules: { create: "true", read: "true", update: "true", delete: "true" }
"""

# Fast hashing and no rate limits, so that the generated calls reach the handlers.
ALYX_YAML = """\
auth:
  bcrypt_cost: 4
  rate_limit: { login: "off", register: "off", reset: "off" }
"""
PASSWORD = "correct horse battery"
# Cases per operation and phase: enough to reach every branch the document describes
# while each run stays well under a minute.
MAX_EXAMPLES = 8
SEED = 14

SCHEMATHESIS_TOML = """\
# Every check runs (the command line says --checks all); these lines only narrow inputs
# the OpenAPI document cannot describe.

# WebSocket routes: OpenAPI 3.1 cannot describe an upgrade, and a plain GET is refused
# with 400 by design. tests/alyx_server/realtime and test_admin_live send them real sockets.
[[operations]]
include-operation-id = ["realtime", "admin_events"]
enabled = false

# alyx deploy's prepare takes a bundle (a gzip'd tar whose manifest must hold the sha256 of
# every member, sent with its own hash in a header), execute a plan_id only prepare hands
# out, and rollback a version only an executed deploy creates: no JSON Schema describes
# them, so every generated call is refused (400, 404, 409) by design.
# tests/alyx_server/api/test_deploy_routes.py sends real bundles, plans and versions and
# the refusals; history and status are fuzzed here like any route.
[[operations]]
include-operation-id = ["deploy_prepare", "deploy_execute", "deploy_rollback"]
enabled = false

# A webhook's `when` is CEL over doc: a grammar JSON Schema cannot state, so generated
# conditions are refused (400 RULE_ERROR) by design; and each webhook added would send
# deliveries to whatever host the fuzzer wrote. Its url and secret are described by the
# patterns the server checks (config/webhooks.py); tests/alyx_server/webhooks and
# tests/alyx_server/jobs/test_queue.py send real bodies, refusals and limits. Listing,
# removing and the delivery log are fuzzed here like any route.
[[operations]]
include-operation-id = ["admin_add_webhook"]
enabled = false

# bcrypt reads 72 bytes of a password, so the server counts UTF-8 bytes; JSON Schema can
# only count characters, so the document's maxLength is exact for ASCII text alone. The
# operations that take a password are sent ASCII text.
[[operations]]
include-operation-id = ["auth_register", "auth_login", "auth_change_password", "auth_reset",
                        "auth_delete_me", "admin_create_user"]
generation = { codec = "ascii" }

# `where=` is CEL and `filter=` a field:op:value whose value must fit the field's type:
# grammars JSON Schema cannot state, so a schema-valid random string is still refused
# (400 INVALID_QUERY). They are sent with fixed valid values here; their own grammar is
# fuzzed by tests/alyx_server/api/test_properties.py and test_listing.py.
[[operations]]
include-operation-id-regex = "^list_"
parameters = { "query.where" = "has(doc.id) && true", "query.filter" = ["id:not_null"] }
"""


# A log line of the console format: it ends the traceback before it.
_LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")


def tracebacks(log: str) -> list[str]:
    """The tracebacks in the server's log (every 500 logs one).

    One kind is left out: aiohttp's own HTTP parser refusing a request line or header
    it cannot read (Schemathesis probes whether a NUL byte fits in a header) answers
    400 before any Alyx code runs, and aiohttp logs that with its traceback.
    """
    blocks: list[list[str]] = []
    for line in log.splitlines():
        if line.startswith("Traceback"):
            blocks.append([line])
        elif blocks and not _LOG_LINE.match(line):
            blocks[-1].append(line)
    traces = ["\n".join(block) for block in blocks]
    return [t for t in traces if "aiohttp.http_exceptions.BadHttpMessage" not in t]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AlyxProcess]:
    root = write_project(tmp_path_factory.mktemp("fuzz") / "project", SCHEMA_YAML)
    (root / "alyx.yaml").write_text(ALYX_YAML, encoding="utf-8")
    with AlyxProcess(root, "dev") as server:
        yield server


@pytest.fixture(scope="module")
def tokens(live: AlyxProcess) -> dict[str, str]:
    """A signed-in user's access token and an admin token, by caller name."""
    answer = requests.post(
        f"{live.url}/api/auth/register",
        json={"email": "fuzz-user@example.com", "password": PASSWORD},
        timeout=30,
    )
    assert answer.status_code == 201, answer.text
    result = CliRunner().invoke(cli, ["admin", "create-token", "--name", "fuzz", "-C", str(live.project)])
    assert result.exit_code == 0, result.output
    return {"user": answer.json()["tokens"]["access_token"], "admin": result.stdout.strip()}


# Built from the same schema as the server's, with the default password policy (ALYX_YAML
# keeps it); `test_the_live_document_is_the_one_tested` checks the server publishes it.
DOCUMENT = openapi_document(parse_schema(SCHEMA_YAML))


def test_the_live_document_is_the_one_tested(live: AlyxProcess) -> None:
    answer = requests.get(f"{live.url}/api/openapi.json", timeout=30)
    assert answer.status_code == 200
    assert answer.json() == DOCUMENT


def _schemathesis(live: AlyxProcess, config: Path, token: str | None) -> subprocess.CompletedProcess[str]:
    command = [
        str(Path(sys.executable).with_name("schemathesis")), "--no-color", "--config-file", str(config),
        "run", f"{live.url}/api/openapi.json",
        "--checks", "all",
        "--phases", "examples,coverage,fuzzing,stateful",
        "--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED), "--workers", "1",
        "--request-timeout", "30", "--wait-for-schema", "30",
    ]  # fmt: skip
    if token is not None:
        command += ["--header", f"Authorization: Bearer {token}"]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)


@pytest.mark.parametrize("caller", ["anonymous", "user", "admin"])
def test_every_operation_conforms(
    live: AlyxProcess, tokens: dict[str, str], caller: str, tmp_path: Path
) -> None:
    """Every operation, sent as `caller`, passes every Schemathesis check in every phase."""
    config = tmp_path / "schemathesis.toml"
    config.write_text(SCHEMATHESIS_TOML, encoding="utf-8")
    run = _schemathesis(live, config, tokens.get(caller))
    report = run.stdout + run.stderr
    assert run.returncode == 0, report
    assert "Stateful" in report, report


def test_the_server_logged_no_traceback(live: AlyxProcess) -> None:
    assert tracebacks(live.output()) == []
