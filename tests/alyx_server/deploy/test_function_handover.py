"""With `alyx serve --workers 2`, a deploy that changes a function hands the new function
to the workers one after another (api/deploy.py `_execute`): the executing worker warms
its new pool first, then the other worker warms its own. Started together, the new
executors took every core the load runs on (docs/benchmarks.md, "Deploy").

The server's log says how long each step took: the deploy's `functions` step (both
workers), the other worker's `took the new functions in N ms`, and each executor start.
In turn, the step lasts at least the other worker's part plus one start of the executing
worker's; together it would last about as long as the longer of the two.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from alyx_cli.commands.init import create_project
from tests.alyx_server.deploy.load import APP_CONFIG, deploy, edit, first_server
from tests.servers import DEADLINE, AlyxProcess, cli_environment, free_port

pytestmark = pytest.mark.slow


def _messages(log: Path) -> list[str]:
    """The log's messages in the order of their times (each worker writes its own lines)."""
    found = []
    for line in log.read_text(encoding="utf-8").splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            found.append((str(entry["ts"]), str(entry.get("message", ""))))
    return [message for _, message in sorted(found, key=lambda e: e[0])]


def _wait_for(log: Path, message: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while message not in log.read_text(encoding="utf-8"):
        assert time.monotonic() < deadline, f"{message!r} never logged"
        time.sleep(0.05)


def test_the_workers_take_a_changed_function_one_after_the_other(tmp_path: Path) -> None:
    port = free_port()
    server, token = first_server(tmp_path, port)
    project = tmp_path / "blog"
    create_project("blog", project, project_name="blog", force=False)
    (project / "alyx.yaml").write_text(APP_CONFIG, encoding="utf-8")
    env = cli_environment(ALYX_DEPLOY_URL=f"http://127.0.0.1:{port}", ALYX_DEPLOY_TOKEN=token)
    log = tmp_path / "serve.log"
    with AlyxProcess(server, "serve", "--workers", "2", port=port, log=log):
        _wait_for(log, "all 2 workers ready")
        assert "deployed version 1 to " in deploy(project, env, "--yes")
        edit(project / "functions" / "publish.mjs", "export default", "// changed\nexport default")
        assert "deployed version 2 to " in deploy(project, env, "--yes")

    messages = _messages(log)
    begin = next(i for i, m in enumerate(messages) if m.startswith("prepared plan") and "version 2" in m)
    end = next(i for i, m in enumerate(messages) if m.startswith("deployed version 2 "))
    during = messages[begin:end]
    started = r"publish: a worker started in (\d+) ms"
    starts = [int(m[1]) for text in during if (m := re.search(started, text))]
    took = [int(m[1]) for text in during if (m := re.search(r"the new functions in (\d+) ms", text))]
    functions = re.search(r"functions (\d+) ms", messages[end])
    assert functions is not None, messages[end]
    assert len(took) == 1, during  # the other worker took them once
    assert len(starts) >= 2, during  # a new executor in each worker
    assert int(functions[1]) >= took[0] + min(starts), (messages[end], during)
