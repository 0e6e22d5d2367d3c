"""docs/getting-started.md followed as written, ending in a real browser.

The test reads the guide's blocks in order, from an empty folder:

- a ```sh block runs in bash (`cd` carries over to the next block), with the virtual
  environment's `bin` and the TypeScript compiler pinned in tests/codegen_env first on PATH;
- a block whose first line names a file (`# schema.yaml`, `<!-- web/index.html -->`) is
  written to that file;
- the two long-running commands, `alyx dev` and `python3 -m http.server ...`, are started in
  the background and stopped at the end;
- blocks marked `<!-- not-run: ... -->` are skipped (step 1 installs what the test runs in).

Then Debian's chromium, driven by Playwright, does what the guide's last step says:
registers, adds a note, sees a note added in a second window of the same account arrive,
sees that another account's list holds only its own notes, and calls the function. When
port 8090 or 8000 is taken on the machine, a free one is used instead and the address is
changed in the blocks, nothing else. A screenshot of the page is left in the test's
tmp_path (getting-started.png).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.servers import AlyxProcess, cli_environment, free_port, port_is_free
from tests.test_docs_examples import DOCS, REPO, Example, page_examples

if TYPE_CHECKING:
    from playwright.sync_api import Browser

pytestmark = pytest.mark.slow
# Installed by `make test` (the `test` extra); never `playwright install`: the browser is Debian's.
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright comes with the test extra")

GUIDE = DOCS / "getting-started.md"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TSC_BIN = REPO / "tests" / "codegen_env" / "node_modules" / ".bin"
FILE_LINE = re.compile(r"^(?:# (?P<hash>\S+)|<!-- (?P<html>\S+) -->)$")
API, WEB = 8090, 8000
WAIT = 60.0  # seconds: a bound on each wait, never a claim about speed


def _environment() -> dict[str, str]:
    path = f"{Path(sys.executable).parent}{os.pathsep}{TSC_BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    return cli_environment(PATH=path)


def _file_of(example: Example) -> str | None:
    first = FILE_LINE.match(example.text.splitlines()[0])
    return (first.group("hash") or first.group("html")) if first else None


def _wait_for(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    end = time.monotonic() + WAIT
    while time.monotonic() < end:
        assert process.poll() is None, f"{url}: the server exited:\n{log.read_text()}"
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer:\n{log.read_text()}")


@contextmanager
def background(script: str, cwd: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`script` run by bash in its own process group, stopped with SIGTERM at the end."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["bash", "-c", f"exec {script}"],
            cwd=cwd,
            env=_environment(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=WAIT)


def follow_the_guide(tmp_path: Path, stack: ExitStack, api: int, web: int) -> None:
    """Everything up to the browser: files written, commands run, servers started."""
    cwd = tmp_path
    for example in page_examples(GUIDE):
        text = example.text.replace("127.0.0.1:8090", f"127.0.0.1:{api}")
        if example.not_run is not None:
            continue
        target = _file_of(example)
        if target is not None:
            (cwd / target).parent.mkdir(parents=True, exist_ok=True)
            (cwd / target).write_text(text, encoding="utf-8")
        elif example.language != "sh":
            pytest.fail(f"{example.name}: a {example.language} block that names no file")
        elif text.strip() == "alyx dev":
            stack.enter_context(AlyxProcess(cwd, "dev", port=api, log=tmp_path / "dev.log"))
        elif text.startswith("python3 -m http.server"):
            command = text.strip().replace(f" {WEB} ", f" {web} ")
            server = stack.enter_context(background(command, cwd, tmp_path / "web.log"))
            _wait_for(f"http://127.0.0.1:{web}/", server, tmp_path / "web.log")
        else:
            done = subprocess.run(
                ["bash", "-e"],
                input=f"{text}\npwd\n",
                capture_output=True,
                text=True,
                cwd=cwd,
                env=_environment(),
                timeout=300,
                check=False,
            )
            assert done.returncode == 0, f"{example.name}:\n{text}\n{done.stdout}\n{done.stderr}"
            cwd = Path(done.stdout.splitlines()[-1])


def test_the_guide_builds_a_working_page_in_a_browser(tmp_path: Path) -> None:
    assert CHROMIUM.exists(), "no /usr/bin/chromium: make test installs Debian's chromium"
    assert (TSC_BIN / "tsc").exists(), "no pinned tsc: make test runs npm ci in tests/codegen_env"
    api = API if port_is_free(API) else free_port()
    web = WEB if port_is_free(WEB) else free_port()
    with ExitStack() as stack:
        follow_the_guide(tmp_path, stack, api, web)
        assert (tmp_path / "notes" / "web" / "client" / "index.js").is_file()
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
            )
            try:
                use_the_page(browser, f"http://127.0.0.1:{web}/", tmp_path)
            finally:
                browser.close()


def use_the_page(browser: Browser, url: str, tmp_path: Path) -> None:
    """Step 7 of the guide, in two windows of one account and one of another."""
    expect = sync_api.expect
    ada = browser.new_context().new_page()
    ada.goto(url)
    ada.fill("#email", "ada@example.com")
    ada.fill("#password", "correct horse battery")
    ada.click("#register")
    expect(ada.locator("#who")).to_have_text("Signed in as ada@example.com.")
    ada.fill("#title", "Buy oat milk")
    ada.click("#new-note button")
    expect(ada.locator("#notes li")).to_have_text(["Buy oat milk"])
    expect(ada.locator("#title")).to_have_value("")

    # A second window signed in as the same account sees the note, then one added in the first.
    again = browser.new_context().new_page()
    again.goto(url)
    again.fill("#email", "ada@example.com")
    again.fill("#password", "correct horse battery")
    again.click("#login")
    expect(again.locator("#notes li")).to_have_text(["Buy oat milk"])
    ada.fill("#title", "Call the bank today")
    ada.click("#new-note button")
    expect(again.locator("#notes li")).to_have_text(["Call the bank today", "Buy oat milk"])

    # Another account sees only its own notes.
    bob = browser.new_context().new_page()
    bob.goto(url)
    bob.fill("#email", "bob@example.com")
    bob.fill("#password", "another good password")
    bob.click("#register")
    expect(bob.locator("#who")).to_have_text("Signed in as bob@example.com.")
    bob.fill("#title", "Bob's list")
    bob.click("#new-note button")
    expect(bob.locator("#notes li")).to_have_text(["Bob's list"])

    # The function runs on the server as the caller: Ada's two notes, seven words.
    ada.click("#stats-button")
    expect(ada.locator("#stats")).to_have_text("2 notes, 7 words.")
    for page in (ada, again, bob):
        expect(page.locator("#error")).to_have_text("")
    ada.screenshot(path=str(tmp_path / "getting-started.png"), full_page=True)
