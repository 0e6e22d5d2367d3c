"""A scaffolded project and `alyx dev` running on it as a real process.

`DevServer` reads the process's stdout on a thread, so a test can wait (with a bound)
for a console line while it talks to the API over HTTP. Waits poll until a deadline;
none of them asserts how long anything took.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.servers import cli_environment, free_port

__all__ = ["DEADLINE", "DevServer", "dev_server", "scaffold", "wait_for"]

DEADLINE = 30.0  # seconds: a bound on every wait, never a claim about speed
T = TypeVar("T")


def environment() -> dict[str, str]:
    return cli_environment(ALYX_AUTH_BCRYPT_COST="4")


def scaffold(tmp_path: Path, template: str = "basic") -> Path:
    """`alyx init app -t <template>` in tmp_path; the project folder."""
    subprocess.run(
        [sys.executable, "-m", "alyx_cli", "init", "app", "-t", template],
        cwd=tmp_path, env=environment(), check=True, capture_output=True, text=True,
    )  # fmt: skip
    return tmp_path / "app"


def wait_for(check: Callable[[], T | None], what: str, deadline: float = DEADLINE) -> T:
    """Call `check` until it returns something other than None (or fail naming `what`)."""
    end = time.monotonic() + deadline
    while True:
        found = check()
        if found is not None:
            return found
        if time.monotonic() > end:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


class DevServer:
    """A running `alyx dev`: its URL, its console lines so far, and HTTP calls to it."""

    def __init__(self, project: Path, *args: str) -> None:
        port = free_port()
        self.project = project
        self.url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "alyx_cli", "dev", "-p", str(port), *args],
            cwd=project, env=environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.lines: list[str] = []
        self.errors: list[str] = []
        self._threads = [
            threading.Thread(target=self._read, args=(self.process.stdout, self.lines), daemon=True),
            threading.Thread(target=self._read, args=(self.process.stderr, self.errors), daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        wait_for(lambda: True if any(" serving " in line for line in self.lines) else None, "the banner")

    @staticmethod
    def _read(stream: Any, into: list[str]) -> None:
        for line in stream:
            into.append(line.rstrip("\n"))

    def line(self, *parts: str, after: int = 0) -> str:
        """The first console line (from index `after`) containing every part."""

        def find() -> str | None:
            for line in self.lines[after:]:
                if all(p in line for p in parts):
                    return line
            if self.process.poll() is not None:
                raise AssertionError(f"alyx dev exited: {self.errors[-20:]}")
            return None

        return wait_for(find, f"a line with {parts!r}; lines so far: {self.lines}")

    def call(self, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=DEADLINE) as response:
                raw = response.read()
                return response.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as e:
            raw = e.read()
            return e.code, json.loads(raw) if raw else None

    def register(self, email: str = "ada@example.com") -> tuple[str, str]:
        """A new account: (user id, access token)."""
        status, body = self.call(
            "POST", "/api/auth/register", {"email": email, "password": "correct horse 1"}
        )
        assert status == 201, body
        return body["user"]["id"], body["tokens"]["access_token"]

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=DEADLINE)
        for thread in self._threads:
            thread.join(timeout=DEADLINE)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()
        return self.process.returncode


@pytest.fixture
def dev_server() -> Iterator[Callable[..., DevServer]]:
    """`dev_server(project, *args)`: start `alyx dev`; every one is stopped at the end."""
    started: list[DevServer] = []

    def start(project: Path, *args: str) -> DevServer:
        server = DevServer(project, *args)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
