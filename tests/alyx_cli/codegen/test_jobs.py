"""Typed `enqueue` for jobs clients may queue: a `job:` manifest with a rule (not `false`).

The project is the golden one plus three jobs: `sendWelcome` (a rule: clients get
`jobs.sendWelcome.enqueue`), `cleanup` (no rule: admins only) and `locked` (`rule:
"false"`); neither of the last two gets a client method. Each language's output compiles
under its strict checks with a usage program whose expected errors prove the types bite.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from alyx_cli.codegen import CodegenModel, build_model
from alyx_server.functions import Defaults, discover_functions
from alyx_server.schema.loader import load_schema
from tests.alyx_cli.codegen.conftest import (
    GOLDEN_PROJECT,
    check_go,
    check_python,
    check_typescript,
    generate_project,
    prepare_go_module,
)

SOURCE = """from alyx_functions import define_function


async def handler(input, ctx):
    return {}


{name} = define_function(handler=handler)
"""

MANIFESTS = {
    "sendWelcome": "input:\n  user_id: { type: uuid }\n  note: { type: string, nullable: true }\n"
    'rule: "auth != null"\njob: { max_attempts: 3 }\n',
    "cleanup": "job: true\n",
    "locked": 'rule: "false"\njob: true\n',
}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    shutil.copytree(GOLDEN_PROJECT, root)
    for name, manifest in MANIFESTS.items():
        (root / "functions" / f"{name}.py").write_text(SOURCE.replace("{name}", name))
        (root / "functions" / f"{name}.yaml").write_text(manifest)
    return root


def _model(project: Path) -> CodegenModel:
    found = discover_functions(project / "functions", Defaults(), root=project)
    assert not found.problems, found.problems
    return build_model(load_schema(project / "schema.yaml"), found.functions)


def test_only_jobs_with_a_client_facing_rule_get_enqueue(project: Path) -> None:
    model = _model(project)
    assert [fn.name for fn in model.jobs] == ["sendWelcome"]
    golden = _model(GOLDEN_PROJECT)
    assert golden.jobs == ()


def test_a_collection_named_jobs_moves_aside_only_when_the_client_has_jobs(project: Path) -> None:
    schema = (project / "schema.yaml").read_text()
    jobs = "  jobs:\n    fields:\n      id: { type: uuid, primary: true, default: auto }\n"
    (project / "schema.yaml").write_text(schema.replace("collections:\n", "collections:\n" + jobs, 1))
    with_jobs = _model(project)
    assert with_jobs.collection("jobs").accessor == "jobs_collection"
    for name in MANIFESTS:
        (project / "functions" / f"{name}.yaml").unlink()
        (project / "functions" / f"{name}.py").unlink()
    assert _model(project).collection("jobs").accessor == "jobs"


USAGE_TS = """import { createClient } from "./index.js";
import type { Enqueued } from "./index.js";

export async function usage(): Promise<void> {
  const alyx = createClient({ url: "http://127.0.0.1:8090" });
  const options = { delay: "5m", dedupeKey: "k" };
  const queued: Enqueued = await alyx.jobs.sendWelcome.enqueue({ user_id: "u" }, options);
  const state: "queued" | "running" = queued.state;
  const id: string = (await alyx.jobs.sendWelcome.enqueue({ user_id: "u", note: null })).id;
  void state;
  void id;
  // @ts-expect-error: user_id is required
  await alyx.jobs.sendWelcome.enqueue({ note: "hi" });
  // @ts-expect-error: user_id is a string
  await alyx.jobs.sendWelcome.enqueue({ user_id: 1 });
  // @ts-expect-error: dedupeKey is a string
  await alyx.jobs.sendWelcome.enqueue({ user_id: "u" }, { dedupeKey: 1 });
  // @ts-expect-error: no rule, admins only: no client method
  await alyx.jobs.cleanup.enqueue({});
  // @ts-expect-error: rule false: no client method
  await alyx.jobs.locked.enqueue({});
}
"""


def test_typescript_enqueue_is_typed(project: Path, tsc: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    generate_project(project, out, ("typescript",))
    (out / "typescript" / "usage.ts").write_text(USAGE_TS)
    check_typescript(out / "typescript", tsc, out)


USAGE_GO = """package alyxclient

import (
	"context"
	"time"
)

func usage(ctx context.Context, c *Client) (string, error) {
	opts := &EnqueueOptions{Delay: 5 * time.Minute, DedupeKey: "k"}
	q, err := c.Jobs.SendWelcome.Enqueue(ctx, SendWelcomeInput{UserID: "u", Note: Some("hi")}, opts)
	if err != nil {
		return "", err
	}
	if _, err := c.Jobs.SendWelcome.Enqueue(ctx, SendWelcomeInput{UserID: "u"}, nil); err != nil {
		return "", err
	}
	if q.Created {
		return q.ID, nil
	}
	return q.State, nil
}

var _ = usage
"""


def test_go_enqueue_builds_and_admin_only_jobs_have_no_method(
    project: Path, go: str, tmp_path: Path, tool_cache: Path
) -> None:
    out = tmp_path / "out"
    generate_project(project, out, ("go",))
    module = out / "go"
    (module / "usage.go").write_text(USAGE_GO)
    check_go(module, go, tool_cache)
    admin_only = 'c.Jobs.SendWelcome.Enqueue(ctx, SendWelcomeInput{UserID: "u"}, nil)'
    assert admin_only in USAGE_GO
    cleanup = "c.Jobs.Cleanup.Enqueue(ctx, CleanupInput{}, nil)"
    (module / "usage.go").write_text(USAGE_GO.replace(admin_only, cleanup))
    env = prepare_go_module(module, tool_cache, go)
    build = [go, "build", "./..."]
    done = subprocess.run(build, cwd=module, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "Cleanup" in done.stderr, done.stderr


USAGE_PY = """from __future__ import annotations

from typing import Literal

from alyx_client import Alyx, AsyncAlyx, Enqueued


def usage(alyx: Alyx) -> str:
    queued: Enqueued = alyx.jobs.send_welcome.enqueue({"user_id": "u"}, delay="5m", dedupe_key="k")
    state: Literal["queued", "running"] = queued["state"]
    alyx.jobs.send_welcome.enqueue({"user_id": "u", "note": None}, delay=30)
    alyx.jobs.send_welcome.enqueue({"note": "hi"})  # type: ignore[typeddict-item]
    alyx.jobs.send_welcome.enqueue({"user_id": 1})  # type: ignore[typeddict-item]
    alyx.jobs.send_welcome.enqueue({"user_id": "u"}, dedupe_key=1)  # type: ignore[arg-type]
    alyx.jobs.cleanup.enqueue({})  # type: ignore[attr-defined]
    alyx.jobs.locked.enqueue({})  # type: ignore[attr-defined]
    return queued["id"] + state


async def usage_async(alyx: AsyncAlyx) -> bool:
    queued = await alyx.jobs.send_welcome.enqueue({"user_id": "u"})
    created: bool = queued["created"]
    return created
"""


def test_python_enqueue_is_mypy_strict_clean(project: Path, tmp_path: Path, tool_cache: Path) -> None:
    # --strict warns about unused ignores: each `type: ignore` above must be needed.
    out = tmp_path / "out"
    generate_project(project, out, ("python",))
    (out / "python" / "alyx_client" / "usage.py").write_text(USAGE_PY)
    check_python(out / "python", tool_cache)
