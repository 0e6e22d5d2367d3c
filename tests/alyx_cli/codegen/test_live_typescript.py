"""The generated TypeScript client against a real server, compiled by the pinned tsc and
run on Node with a WebSocket implementation (`ws`) passed in through the client's options."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

from tests.alyx_cli.codegen.conftest import (
    CODEGEN_ENV,
    LiveServer,
    generate_project,
    parse_result,
    require,
    round_trip_expectations,
    run,
)

PROGRAMS = Path(__file__).parent / "programs"
TYPE_ROOTS = CODEGEN_ENV / "node_modules" / "@types"


def test_typescript_round_trip(live_server: LiveServer, tsc: Path, tmp_path: Path) -> None:
    generate_project(live_server.project, tmp_path, ("typescript",))
    src = tmp_path / "typescript"
    shutil.copy(PROGRAMS / "round_trip.ts", src / "round_trip.ts")
    node = require("node", "apt-get install -y nodejs")
    out = tmp_path / "js"
    run(
        [
            node,
            str(tsc),
            "--strict",
            "--target",
            "ES2022",
            "--module",
            "ES2022",
            "--moduleResolution",
            "bundler",
            "--lib",
            "ES2022,DOM",
            "--types",
            "node",
            "--typeRoots",
            str(TYPE_ROOTS),
            "--outDir",
            str(out),
            *sorted(str(p) for p in src.glob("*.ts")),
        ],
        tmp_path,
        env=None,
    )
    (out / "package.json").write_text('{"type": "module"}\n')
    stdout = run(
        [
            node,
            str(out / "round_trip.js"),
            live_server.url,
            uuid.uuid4().hex[:8],
            str(CODEGEN_ENV / "package.json"),
        ],
        tmp_path,
        timeout=120,
    )
    result = parse_result(stdout)
    round_trip_expectations(result)
    assert result["batch"] == ["batched", "p-a"]
