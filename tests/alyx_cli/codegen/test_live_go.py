"""The generated Go client against a real server, built offline with Debian's gorilla/websocket."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

from tests.alyx_cli.codegen.conftest import (
    GORILLA,
    LiveServer,
    generate_project,
    go_env,
    parse_result,
    round_trip_expectations,
    run,
)

PROGRAMS = Path(__file__).parent / "programs"


def test_go_round_trip(live_server: LiveServer, go: str, tmp_path: Path, tool_cache: Path) -> None:
    generate_project(live_server.project, tmp_path, ("go",))
    main = tmp_path / "main"
    main.mkdir()
    shutil.copy(PROGRAMS / "round_trip.go", main / "main.go")
    (main / "go.mod").write_text(
        "module roundtrip\n\ngo 1.19\n\n"
        "require (\n\talyxclient v0.0.0\n\tgithub.com/gorilla/websocket v1.5.0\n)\n\n"
        f"replace alyxclient => {tmp_path / 'go'}\n\n"
        f"replace github.com/gorilla/websocket => {GORILLA}\n"
    )
    env = go_env(tool_cache)
    run([go, "build", "-o", str(tmp_path / "roundtrip"), "."], main, env)
    stdout = run(
        [str(tmp_path / "roundtrip"), live_server.url, uuid.uuid4().hex[:8]], tmp_path, env, timeout=120
    )
    result = parse_result(stdout)
    round_trip_expectations(result)
    assert result["batch"] == ["batched", "p-a"]
