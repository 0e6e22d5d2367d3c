"""Two `alyx serve` processes on one project (ALYX_WORKER=1 and 2, each on its own port and
a single worker, both with PROMETHEUS_MULTIPROC_DIR naming one empty directory): a rate limit counts the
attempts made through either; /metrics on either shows the requests and realtime
connections of both; the supervisor's hooks (worker_exited, record_worker_restart,
use_multiprocess) act on what they render."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from alyx_server.metrics import MULTIPROCESS_ENV, worker_exited
from tests.schemas import NOTES
from tests.servers import DEADLINE, AlyxProcess, cli_environment

SECRET = "m" * 40


class Pair:
    """One project served by two processes that share their metrics directory."""

    def __init__(self, tmp_path: Path) -> None:
        self.project = tmp_path / "project"
        self.project.mkdir()
        (self.project / "schema.yaml").write_text(NOTES, encoding="utf-8")
        self.metrics_dir = tmp_path / "metrics"
        self.metrics_dir.mkdir()
        self.processes: list[AlyxProcess] = []
        for name in ("1", "2"):
            env = cli_environment(
                ALYX_AUTH_JWT_SECRET=SECRET,
                ALYX_AUTH_RATE_LIMIT_LOGIN="3/minute",
                ALYX_WORKER=name,
                ALYX_SERVER_WORKERS="1",  # each process one worker: no supervisor of its own
                **{MULTIPROCESS_ENV: str(self.metrics_dir)},
            )
            log = tmp_path / f"worker-{name}.log"
            self.processes.append(AlyxProcess(self.project, "serve", env=env, log=log).start())

    @property
    def urls(self) -> list[str]:
        return [p.url for p in self.processes]

    def stop(self) -> None:
        for process in self.processes:
            process.stop()


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    servers = Pair(tmp_path)
    try:
        yield servers
    finally:
        servers.stop()


async def scrape(session: aiohttp.ClientSession, url: str) -> str:
    async with session.get(f"{url}/metrics") as answer:
        assert answer.status == 200
        return await answer.text()


def sample(text: str, series: str, **labels: str) -> float:
    """The value of `series` with exactly these labels in Prometheus text (0 if absent)."""
    for line in text.splitlines():
        match = re.fullmatch(r"([a-z_]+)(?:\{(.*)\})? (\S+)", line)
        if match is None or match[1] != series:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match[2] or ""))
        if found == labels:
            return float(match[3])
    return 0.0


async def test_a_login_limit_counts_attempts_through_both_processes(pair: Pair) -> None:
    first, second = pair.urls
    body = {"email": "nobody@example.com", "password": "wrong password"}
    async with aiohttp.ClientSession() as session:
        for url in (first, second, first):
            async with session.post(f"{url}/api/auth/login", json=body) as answer:
                assert answer.status == 401, await answer.text()
        for url in (second, first):  # the 4th attempt, on either process
            async with session.post(f"{url}/api/auth/login", json=body) as answer:
                assert answer.status == 429, await answer.text()
                assert (await answer.json())["code"] == "RATE_LIMITED"
                assert 1 <= int(answer.headers["Retry-After"]) <= 60


async def test_metrics_on_either_process_add_up_both(pair: Pair) -> None:
    first, second = pair.urls
    route = "/api/collections/{collection}"
    async with aiohttp.ClientSession() as session:
        for url, times in ((first, 3), (second, 2)):
            for _ in range(times):
                async with session.get(f"{url}/api/collections/notes") as answer:
                    assert answer.status == 200
        texts = [await scrape(session, url) for url in (first, second)]
    for text in texts:
        labels = {"route": route, "method": "GET", "status": "200"}
        assert sample(text, "alyx_http_requests_total", **labels) == 5, text
        assert sample(text, "alyx_http_request_duration_seconds_count", route=route) == 5, text


async def test_realtime_gauges_sum_the_live_processes(pair: Pair) -> None:
    first, second = pair.urls
    async with aiohttp.ClientSession() as session:
        sockets = []
        for url in (first, first, second):
            ws = await session.ws_connect(f"{url}/api/realtime")
            message = await asyncio.wait_for(ws.receive_json(), DEADLINE)
            assert message["type"] == "connected", message
            sockets.append(ws)
        for url in (first, second):
            text = await scrape(session, url)
            assert sample(text, "alyx_realtime_connections") == 3, (url, text)
        await sockets.pop(0).close()
        await wait_for_connections(session, second, 2)

        # A worker killed with its connection open: the supervisor reaps it and calls
        # worker_exited(pid), which drops its live gauges from every scrape.
        killed = pair.processes[1].process
        assert killed is not None
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=DEADLINE)
        assert sample(await scrape(session, first), "alyx_realtime_connections") == 2
        os.environ[MULTIPROCESS_ENV] = str(pair.metrics_dir)
        try:
            worker_exited(killed.pid)
        finally:
            del os.environ[MULTIPROCESS_ENV]
        text = await scrape(session, first)
        assert sample(text, "alyx_realtime_connections") == 1
        for ws in sockets:
            await ws.close()


async def wait_for_connections(session: aiohttp.ClientSession, url: str, count: float) -> None:
    """The server counts a closed socket once its handler ends: a bounded poll."""
    for _ in range(int(DEADLINE * 10)):
        if sample(await scrape(session, url), "alyx_realtime_connections") == count:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"alyx_realtime_connections never reached {count}")


def supervisor(directory: Path, code: str) -> subprocess.CompletedProcess[str]:
    """`code` run in a fresh interpreter after use_multiprocess(directory), as the supervisor does."""
    script = f"import sys\nfrom pathlib import Path\nfrom alyx_server import metrics\n{code}\n"
    return subprocess.run(
        [sys.executable, "-c", script, str(directory)],
        env=cli_environment(), capture_output=True, text=True, timeout=DEADLINE,
    )  # fmt: skip


async def test_worker_restarts_counted_by_the_supervisor_show_in_every_worker(pair: Pair) -> None:
    done = supervisor(
        pair.metrics_dir,
        "metrics.use_multiprocess(Path(sys.argv[1]))\nmetrics.record_worker_restart('2')\n"
        "metrics.record_worker_restart('2')",
    )
    assert done.returncode == 0, done.stderr
    async with aiohttp.ClientSession() as session:
        for url in pair.urls:
            assert sample(await scrape(session, url), "alyx_worker_restarts_total", worker="2") == 2


def test_use_multiprocess_refuses_once_prometheus_client_is_imported(tmp_path: Path) -> None:
    done = supervisor(tmp_path, "import prometheus_client\nmetrics.use_multiprocess(Path(sys.argv[1]))")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "RuntimeError: prometheus_client was imported before alyx_server.metrics.use_multiprocess(); "
        "call it before importing the application"
    )
