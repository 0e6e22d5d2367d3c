"""Two supervisors on one database keep their own /metrics series: the second
`alyx serve --workers 2` on a project must not wipe the first one's, and a stopped
supervisor leaves no metrics folder behind."""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path

from alyx_server.tools.processes import run_dir
from tests.schemas import NOTES
from tests.servers import AlyxProcess, cli_environment

SECRET = "m" * 40
_HEALTH = re.compile(r'alyx_http_requests_total\{[^}]*route="/health"[^}]*\} (\d+(?:\.\d+)?)')


def health_requests(url: str) -> float:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    return sum(float(n) for n in _HEALTH.findall(text))


def test_a_second_supervisor_keeps_the_first_ones_metrics(tmp_path: Path) -> None:
    project = tmp_path / "app"
    project.mkdir()
    (project / "schema.yaml").write_text(NOTES, encoding="utf-8")
    env = cli_environment(ALYX_AUTH_JWT_SECRET=SECRET)
    folder = run_dir(project / "data" / "alyx.db")
    first = AlyxProcess(project, "serve", "--workers", "2", env=env, log=tmp_path / "first.log")
    with first:
        for _ in range(5):
            urllib.request.urlopen(f"{first.url}/health", timeout=10).close()
        before = health_requests(first.url)
        assert before >= 5
        second = AlyxProcess(project, "serve", "--workers", "2", env=env, log=tmp_path / "second.log")
        with second:
            assert health_requests(first.url) >= before
        assert len(list(folder.glob("metrics-*"))) == 1
    assert list(folder.glob("metrics-*")) == []
