"""The `alyx dev` loop: from a saved file to the running server using it.

    python bench/bench_dev_reload.py [--edits 20] [--languages typescript]

Runs `alyx dev` as a real process on a fresh `alyx init -t basic` project, then:

    schema   each edit adds one nullable field to schema.yaml; the time runs from just
             before the write until the console line `schema.yaml changed · + notes.f_N ·
             migration applied · clients regenerated` is read from the process (the
             migration is committed and the clients are on disk by then)
    api      the same edits, until a POST carrying the new field answers 201 (polled)
    function each edit changes the greeting of functions/hello.py; the time runs until an
             invocation (polled back to back) returns the new text

Prints one Markdown table: p50, p90 and max in milliseconds per measure. Each edit
waits for the previous one to be applied, so the edits never coalesce.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

DEADLINE = 60.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Dev:
    """`alyx dev` on a project; console lines are timestamped as they are read."""

    def __init__(self, project: Path, languages: str) -> None:
        self.port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("ALYX_")}
        env |= {"ALYX_AUTH_BCRYPT_COST": "4", "ALYX_LOGGING_LEVEL": "warning"}
        env["ALYX_DEV_GENERATE_LANGUAGES"] = json.dumps(languages.split(","))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "alyx_cli", "dev", "-p", str(self.port)],
            cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        self.lines: list[tuple[float, str]] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.wait_line("serving", 0)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append((time.perf_counter(), line.rstrip("\n")))

    def wait_line(self, text: str, after: int) -> float:
        end = time.monotonic() + DEADLINE
        while time.monotonic() < end:
            for stamp, line in self.lines[after:]:
                if text in line:
                    return stamp
            time.sleep(0.001)
        raise SystemExit(f"no line with {text!r}: {self.lines[-5:]}")

    def call(self, method: str, path: str, body: Any, token: str | None = None) -> tuple[int, Any]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", data=json.dumps(body).encode(), method=method
        )
        request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=DEADLINE) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=DEADLINE)


def _poll(check: Any) -> float:
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        if check():
            return time.perf_counter()
    raise SystemExit("gave up polling")


def bench_schema(
    dev: Dev, project: Path, edits: int, user: str, token: str
) -> tuple[list[float], list[float]]:
    schema = project / "schema.yaml"
    anchor = "      pinned:     { type: bool, default: false }\n"
    line_ms: list[float] = []
    api_ms: list[float] = []
    for i in range(edits):
        text = schema.read_text(encoding="utf-8")
        after = len(dev.lines)
        started = time.perf_counter()
        schema.write_text(text.replace(anchor, anchor + f"      f_{i}: {{ type: int, nullable: true }}\n"))
        doc = {"owner_id": user, "title": "t", f"f_{i}": i}
        accepted = _poll(lambda doc=doc: dev.call("POST", "/api/collections/notes", doc, token)[0] == 201)
        done = dev.wait_line(f"+ notes.f_{i} · migration applied · clients regenerated", after)
        line_ms.append((done - started) * 1000)
        api_ms.append((accepted - started) * 1000)
    return line_ms, api_ms


def bench_function(dev: Dev, project: Path, edits: int, token: str) -> list[float]:
    source = project / "functions" / "hello.py"
    out: list[float] = []
    previous = "Hello"
    for i in range(edits):
        greeting = f"Hi{i}"
        source.write_text(source.read_text(encoding="utf-8").replace(f'f"{previous}, ', f'f"{greeting}, '))
        started = time.perf_counter()
        expected = f"{greeting}, Ada!"

        def new_code(expected: str = expected) -> bool:
            status, body = dev.call("POST", "/api/functions/hello", {"input": {"name": "Ada"}}, token)
            return status == 200 and body.get("output", {}).get("message") == expected

        out.append((_poll(new_code) - started) * 1000)
        previous = greeting
    return out


def _row(name: str, values: list[float]) -> str:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return f"| {name} | {len(values)} | {statistics.median(values):.0f} | {p90:.0f} | {max(values):.0f} |"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--edits", type=int, default=20)
    parser.add_argument("--languages", default="typescript")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "alyx_cli", "init", "app", "-t", "basic"], cwd=tmp,
                       check=True, capture_output=True)  # fmt: skip
        project = Path(tmp) / "app"
        dev = Dev(project, args.languages)
        try:
            status, body = dev.call(
                "POST", "/api/auth/register", {"email": "ada@example.com", "password": "correct horse 1"}
            )
            assert status == 201, body
            user, token = body["user"]["id"], body["tokens"]["access_token"]
            line_ms, api_ms = bench_schema(dev, project, args.edits, user, token)
            function_ms = bench_function(dev, project, args.edits, token)
        finally:
            dev.stop()
    print(f"clients: {args.languages}")
    print("| saved file → | edits | p50 ms | p90 ms | max ms |")
    print("|---|---:|---:|---:|---:|")
    print(_row("schema: migration applied and clients regenerated (console line)", line_ms))
    print(_row("schema: new field accepted by the API (polled)", api_ms))
    print(_row("function: next invocation runs the new code (polled)", function_ms))


if __name__ == "__main__":
    main()
