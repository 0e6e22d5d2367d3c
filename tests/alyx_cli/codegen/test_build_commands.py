"""docs/codegen.md's "Building the clients" commands, run exactly as written.

The section's ```sh blocks are fed verbatim to bash from a project folder whose clients
were generated into `generated/`. The pinned TypeScript compiler (tests/codegen_env) and
Go come first on PATH. Nothing reaches the network (GOPROXY=off):

- the offline Go block points the module at Debian's gorilla/websocket, as it says;
- the networked Go block (`go build ./...` alone) runs against a module cache holding
  Debian's copy of gorilla/websocket v1.5.0 recorded under the sums the Go checksum
  database publishes for v1.5.0 (the go.mod sum is Debian's file's own hash): what a
  download leaves behind. Go checks both against the generated go.sum, so a missing or
  wrong entry fails the build as it would online.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.alyx_cli.codegen.conftest import GORILLA, REPO, SCAFFOLDS, generate_project, run

DOCS = REPO / "docs" / "codegen.md"
SECTION = "## Building the clients"
# What proxy.golang.org and sum.golang.org serve for github.com/gorilla/websocket v1.5.0.
GORILLA_ZIP_SUM = "h1:PPwGk2jz7EePpoHN/+ClbZu8SPxiqlu12wZP/3sWmnc="


def build_blocks() -> list[str]:
    text = DOCS.read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    section = text[start : end if end != -1 else len(text)]
    return re.findall(r"^```sh\n(.*?)^```$", section, flags=re.MULTILINE | re.DOTALL)


def block(kind: str) -> str:
    blocks = build_blocks()
    found = {
        "typescript": [b for b in blocks if b.startswith("cd generated/typescript")],
        "go": [b for b in blocks if b.startswith("cd generated/go") and "go mod edit" not in b],
        "go offline": [b for b in blocks if b.startswith("cd generated/go") and "go mod edit" in b],
    }[kind]
    assert len(found) == 1, f"docs/codegen.md should have one {kind} block in {SECTION!r}: {blocks}"
    return found[0]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The blog scaffold with its clients in generated/."""
    root = tmp_path / "blog"
    shutil.copytree(SCAFFOLDS / "blog", root)
    generate_project(root, root / "generated", ("typescript", "go"))
    return root


def seeded_module_cache(cache: Path) -> Path:
    """A Go module cache holding gorilla/websocket v1.5.0 as a download would leave it."""
    module = cache / "github.com" / "gorilla" / "websocket@v1.5.0"
    shutil.copytree(GORILLA, module)
    meta = cache / "cache" / "download" / "github.com" / "gorilla" / "websocket" / "@v"
    meta.mkdir(parents=True)
    shutil.copy(GORILLA / "go.mod", meta / "v1.5.0.mod")
    (meta / "v1.5.0.info").write_text(json.dumps({"Version": "v1.5.0"}))
    (meta / "v1.5.0.ziphash").write_text(GORILLA_ZIP_SUM)
    return cache


def shell(
    script: str, cwd: Path, path: list[Path], home: Path, **extra: str
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GO", "ALYX_"))}
    env.update(
        PATH=os.pathsep.join([*(str(p) for p in path), env.get("PATH", "")]),
        HOME=str(home),
        GOPROXY="off",
        GOTOOLCHAIN="local",
        GOCACHE=str(home / "gocache"),
        GOPATH=str(home / "gopath"),
        CGO_ENABLED="0",
        **extra,
    )
    return subprocess.run(
        ["bash", "-e", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_the_typescript_build_command_builds_the_client(project: Path, tsc: Path, tmp_path: Path) -> None:
    node = shutil.which("node")
    assert node is not None
    done = shell(block("typescript"), project, [tsc.parent, Path(node).parent], tmp_path)

    assert done.returncode == 0, done.stdout + done.stderr
    dist = project / "generated" / "typescript" / "dist"
    assert {p.name for p in dist.iterdir()} >= {"index.js", "index.d.ts", "runtime.js", "types.d.ts"}
    loaded = run([node, "-e", "import('./dist/index.js').then(m => console.log(typeof m.createClient))"],
                 dist.parent)  # fmt: skip
    assert loaded.strip() == "function"


def test_the_go_build_command_needs_no_go_mod_tidy(project: Path, go: str, tmp_path: Path) -> None:
    module = project / "generated" / "go"
    sums = (module / "go.sum").read_text()
    cache = seeded_module_cache(tmp_path / "modcache")

    done = shell(block("go"), project, [Path(go).parent], tmp_path, GOMODCACHE=str(cache))

    assert done.returncode == 0, done.stdout + done.stderr
    assert (module / "go.sum").read_text() == sums


def test_the_offline_go_build_command_uses_debians_package(project: Path, go: str, tmp_path: Path) -> None:
    empty = tmp_path / "empty-modcache"
    empty.mkdir()

    done = shell(block("go offline"), project, [Path(go).parent], tmp_path, GOMODCACHE=str(empty))

    assert done.returncode == 0, done.stdout + done.stderr
    assert (
        f"replace github.com/gorilla/websocket => {GORILLA}"
        in (project / "generated" / "go" / "go.mod").read_text()
    )
