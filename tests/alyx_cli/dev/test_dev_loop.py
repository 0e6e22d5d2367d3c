"""`alyx dev` as a real process on a scaffolded project: edit its files, watch the API follow.

Each test edits schema.yaml, functions/ or alyx.yaml while the server runs, then polls
the API (bounded) for the new behaviour and reads the console line that reported it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.alyx_cli.dev.support import DevServer, dev_server, scaffold, wait_for

__all__ = ["dev_server"]


Start = Callable[..., DevServer]
PINNED = "      pinned:     { type: bool, default: false }\n"
STARS = "      stars:      { type: int, nullable: true }\n"


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_a_new_field_is_applied_live_and_the_client_regenerated(tmp_path: Path, dev_server: Start) -> None:
    project = scaffold(tmp_path)
    server = dev_server(project)
    types = project / "generated" / "typescript"
    wait_for(lambda: True if types.is_dir() else None, "the clients generated at start")
    user, token = server.register()
    note = {"owner_id": user, "title": "first", "stars": 4}
    status, body = server.call("POST", "/api/collections/notes", note, token)
    assert status == 400 and "stars" in body["error"]

    seen = len(server.lines)
    edit(project / "schema.yaml", PINNED, PINNED + STARS)
    line = server.line("schema.yaml changed", after=seen)
    assert line.endswith("schema.yaml changed · + notes.stars · migration applied · clients regenerated")
    assert line[:8].count(":") == 2  # HH:MM:SS

    status, body = server.call("POST", "/api/collections/notes", note, token)
    assert (status, body["stars"]) == (201, 4)
    generated = "".join(p.read_text(encoding="utf-8") for p in types.rglob("*.ts"))
    assert "stars" in generated
    status, spec = server.call("GET", "/api/openapi.json")
    assert "stars" in str(spec["components"]["schemas"])


def test_a_destructive_edit_is_refused_and_the_old_schema_keeps_serving(
    tmp_path: Path, dev_server: Start
) -> None:
    project = scaffold(tmp_path)
    server = dev_server(project)
    user, token = server.register()
    seen = len(server.lines)
    edit(project / "schema.yaml", PINNED, "")
    line = server.line("schema.yaml changed", after=seen)
    assert line.endswith("schema.yaml changed · - notes.pinned · not applied")
    refusal = server.line("schema.yaml has destructive changes", after=seen)
    assert "alyx migrate create drop_pinned" in refusal

    status, body = server.call(
        "POST", "/api/collections/notes", {"owner_id": user, "title": "t", "pinned": True}, token
    )
    assert (status, body["pinned"]) == (201, True)

    seen = len(server.lines)
    edit(project / "schema.yaml", "      title:", "      title  { oops")
    assert server.line("schema.yaml changed · not applied", after=seen)
    assert server.line("schema.yaml:", after=seen)
    assert server.call("GET", "/health")[0] == 200


def test_a_bad_rule_is_shown_without_stopping_the_server(tmp_path: Path, dev_server: Start) -> None:
    project = scaffold(tmp_path)
    server = dev_server(project)
    seen = len(server.lines)
    edit(project / "schema.yaml", 'read:   "auth != null', 'read:   "auth.nope(')
    assert server.line("schema.yaml changed · not applied", after=seen)
    assert server.line("the read rule of notes does not compile", after=seen)
    assert server.call("GET", "/health")[0] == 200


def test_a_function_edit_runs_the_new_code(tmp_path: Path, dev_server: Start) -> None:
    project = scaffold(tmp_path)
    server = dev_server(project)
    _user, token = server.register()
    call = {"input": {"name": "Ada"}}
    status, body = server.call("POST", "/api/functions/hello", call, token)
    assert (status, body["output"]) == (200, {"message": "Hello, Ada!"})

    seen = len(server.lines)
    edit(project / "functions" / "hello.py", 'f"Hello, {name}!"', 'f"Howdy, {name}!"')
    assert server.line("functions/hello.py changed · hello reloaded", after=seen)

    def new_code() -> str | None:
        status, body = server.call("POST", "/api/functions/hello", call, token)
        message = body.get("output", {}).get("message") if status == 200 else None
        return message if message == "Howdy, Ada!" else None

    assert wait_for(new_code, "the new function code") == "Howdy, Ada!"

    seen = len(server.lines)
    edit(
        project / "functions" / "hello.py", "async def handler(input, ctx):", "async def handler(input, ctx)"
    )
    line = server.line("functions/hello.py changed", after=seen)
    assert "hello not served" in line
    assert server.line("functions/hello.py:", after=seen)
    assert server.call("GET", "/health")[0] == 200


def test_a_config_edit_applies_live_keys_and_names_restart_keys(tmp_path: Path, dev_server: Start) -> None:
    project = scaffold(tmp_path)
    server = dev_server(project)
    server.register("first@example.com")
    seen = len(server.lines)
    config = project / "alyx.yaml"
    config.write_text(
        config.read_text(encoding="utf-8")
        + "\nauth:\n  rate_limit:\n    register: 1/hour\nrealtime:\n  poll_interval: 250ms\n",
        encoding="utf-8",
    )
    line = server.line("alyx.yaml changed", after=seen)
    assert line.endswith(
        "alyx.yaml changed · auth.rate_limit.register applied · restart to apply realtime.poll_interval"
    )
    # One registration happened this hour: the new limit refuses the next (the default allows 3/minute).
    refused = server.call(
        "POST", "/api/auth/register", {"email": "b@example.com", "password": "correct horse 1"}
    )
    assert (refused[0], refused[1]["code"]) == (429, "RATE_LIMITED")

    seen = len(server.lines)
    config.write_text("server:\n  nope: 1\n", encoding="utf-8")
    assert server.line("alyx.yaml changed · not applied", after=seen)
    assert server.line("unknown", after=seen)
    assert server.call("GET", "/health")[0] == 200


def test_no_watch_leaves_the_server_as_it_started(tmp_path: Path, dev_server: Start) -> None:
    project = scaffold(tmp_path)
    server = dev_server(project, "--no-watch")
    user, token = server.register()
    edit(project / "schema.yaml", PINNED, PINNED + STARS)
    status, _body = server.call("POST", "/api/collections/notes", {"owner_id": user, "title": "t"}, token)
    assert status == 201
    assert not any("changed" in line for line in server.lines)
    assert not (project / "generated").exists()
