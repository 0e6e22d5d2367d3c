"""A deploy that fails at its commit, on `alyx serve --workers 2`: the worker that did not
execute it was holding its schema gate with the new schema already parsed and compiled
(api/deploy_peers.py stages it before closing the gate); released, it must serve the old
schema again, like the worker that executed it, not the one it staged.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import requests

from alyx_cli.commands.init import create_project
from tests.alyx_server.deploy.load import APP_CONFIG, deploy, edit, first_server, sign_up
from tests.servers import ALYX, DEADLINE, AlyxProcess, cli_environment, free_port

pytestmark = pytest.mark.slow

# Its first step adds the field; its second fails on the stored rows (a duplicate id).
FAILING = """\
version: 2
name: summary
operations:
  - add_field: { collection: posts, field: summary, definition: { type: string, nullable: true } }
  - sql:
      up: "INSERT INTO posts SELECT * FROM posts LIMIT 1"
"""
MAX_TRIES = 200  # new connections until both workers answered; each is a fresh accept


def test_a_deploy_failing_at_its_commit_leaves_both_workers_on_the_old_schema(tmp_path: Path) -> None:
    port = free_port()
    server, token = first_server(tmp_path, port)
    project = tmp_path / "blog"
    create_project("blog", project, project_name="blog", force=False)
    (project / "alyx.yaml").write_text(APP_CONFIG, encoding="utf-8")
    base = f"http://127.0.0.1:{port}"
    env = cli_environment(ALYX_DEPLOY_URL=base, ALYX_DEPLOY_TOKEN=token)
    with AlyxProcess(server, "serve", "--workers", "2", port=port, log=tmp_path / "serve.log"):
        assert "deployed version 1 to " in deploy(project, env, "--yes")
        user_id, access = sign_up(base, "ann@example.com")
        headers = {"Authorization": f"Bearer {access}", "Connection": "close"}
        post = {"title": "t", "slug": "first", "author_id": user_id}
        created = requests.post(f"{base}/api/collections/posts", json=post, headers=headers, timeout=DEADLINE)
        assert created.status_code == 201, created.text
        edit(project / "schema.yaml", "      tags:       { type: json, nullable: true }\n",
             "      tags:       { type: json, nullable: true }\n"
             "      summary:    { type: string, nullable: true }\n")  # fmt: skip
        (project / "migrations").mkdir(exist_ok=True)
        (project / "migrations" / "002_summary.yaml").write_text(FAILING, encoding="utf-8")

        failed = subprocess.run(
            [str(ALYX), "deploy", "--yes"], cwd=project, env=env, capture_output=True, text=True,
            timeout=DEADLINE, check=False, stdin=subprocess.DEVNULL,
        )  # fmt: skip

        assert failed.returncode != 0, failed.stdout
        assert "002_summary.yaml" in failed.stdout + failed.stderr, failed.stdout + failed.stderr
        lists: dict[str, set[int]] = {}
        creates: dict[str, set[int]] = {}
        for i in range(MAX_TRIES):
            listed = requests.get(f"{base}/api/collections/posts", headers=headers, timeout=DEADLINE)
            lists.setdefault(listed.headers.get("X-Alyx-Worker", "?"), set()).add(listed.status_code)
            new = {**post, "slug": f"p-{i}", "summary": "s"}
            sent = requests.post(f"{base}/api/collections/posts", json=new, headers=headers, timeout=DEADLINE)
            creates.setdefault(sent.headers.get("X-Alyx-Worker", "?"), set()).add(sent.status_code)
            if len(lists) == 2 and len(creates) == 2:
                break
        # Both serve the old schema: the list works, the field it lacks is refused (400).
        assert lists == {"1": {200}, "2": {200}}, lists
        assert creates == {"1": {400}, "2": {400}}, creates
