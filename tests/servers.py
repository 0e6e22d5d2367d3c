"""`alyx dev` or `alyx serve` as a real process on a free loopback port, for the tests that
need a server of its own (the README's tour, fuzzers, the generated clients' round trips).

`AlyxProcess` starts the command, writes its console to a log file, waits until
`/health/ready` answers 200 (failing with the log if the process exits or never gets
ready) and stops it with SIGTERM (SIGKILL if it does not exit). Waits are bounded and
poll; none of them is a claim about speed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

__all__ = ["ALYX", "DEADLINE", "AlyxProcess", "cli_environment", "free_port", "port_is_free"]

# The console script of this environment: what a user runs after `make run`.
ALYX = Path(sys.executable).with_name("alyx")
DEADLINE = 60.0  # seconds: a bound on each wait, never a claim about speed


def free_port() -> int:
    """A loopback TCP port that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def port_is_free(port: int) -> bool:
    """Whether `port` on loopback can be bound now."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cli_environment(**extra: str) -> dict[str, str]:
    """This process's environment without any ALYX_* variable (the developer's own
    settings must not reach the command under test), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALYX_")}
    env.update(extra)
    return env


class AlyxProcess:
    """`alyx <command> --port <port> <args>` run in `project`, its console in `log`."""

    def __init__(
        self,
        project: Path,
        command: str = "dev",
        *args: str,
        port: int | None = None,
        env: dict[str, str] | None = None,
        log: Path | None = None,
    ) -> None:
        self.project = project
        self.port = port if port is not None else free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.address}"
        self.log = log if log is not None else project.parent / f"{project.name}-server.log"
        self.argv = ["alyx", command, "-p", str(self.port), *args]
        if command == "dev" and "--watch" not in args:
            self.argv.append("--no-watch")
        self.env = env if env is not None else cli_environment()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> AlyxProcess:
        """Start the process and return once /health/ready answers 200."""
        argv = [str(ALYX), *self.argv[1:]]
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                argv, cwd=self.project, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        name = " ".join(self.argv[:2])
        end = time.monotonic() + DEADLINE
        while time.monotonic() < end:
            if self.process.poll() is not None:
                raise AssertionError(f"{name} exited with {self.process.returncode}:\n{self.output()}")
            with (
                contextlib.suppress(urllib.error.URLError, OSError),
                urllib.request.urlopen(f"{self.url}/health/ready", timeout=5) as answer,
            ):
                if answer.status == 200:
                    return self
            time.sleep(0.1)
        self.stop()
        raise AssertionError(f"{name} did not get ready:\n{self.output()}")

    def stop(self) -> int:
        """SIGTERM, then SIGKILL for a process that does not exit; its exit code."""
        process = self.process
        if process is None:
            return 0
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=DEADLINE / 2)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=DEADLINE / 2)
        return process.returncode

    def output(self) -> str:
        """Everything the process printed so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def __enter__(self) -> AlyxProcess:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()
