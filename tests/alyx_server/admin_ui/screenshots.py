"""The screenshots of docs/admin.md: a demo server with data, every admin UI page in Chromium.

    .venv/bin/python -m tests.alyx_server.admin_ui.screenshots [--out docs/images/admin]

It makes a blog project (`alyx init -t blog`, plus a Python function) in a temporary
folder, starts `alyx serve --workers 2` on it, fills it through the REST API (users,
posts, comments, function calls, an admin token), signs in through the form with Debian's
Chromium (/usr/bin/chromium, driven by Playwright) and saves PNGs at 1280x800 in the light
and dark colour schemes, plus the phone-width ones (390x844). Every page the navigation
shows is taken, so a new page gets its picture by running this again. It prints each
file it wrote and fails on a console error.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.servers import ALYX, DEADLINE, AlyxProcess, cli_environment

ROOT = Path(__file__).resolve().parents[3]
OUT = ROOT / "docs" / "images" / "admin"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-sync"]
ADMIN, PASSWORD = "admin@example.com", "correct horse battery staple"
SECRET = "s" * 48
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}

DIGEST_PY = """from alyx_functions import define_function


async def handler(input, ctx):
    posts = await ctx.db.posts.find(filter={"published": True}, limit=100)
    words = sum(len(p["body"].split()) for p in posts)
    ctx.log.info("read", len(posts), "published posts")
    if words > 1000:
        ctx.log.warn("long reads:", words, "words")
    return {"posts": len(posts), "words": words}


digest = define_function(handler=handler)
"""
DIGEST_YAML = """\
# Manifest for functions/digest.py: a summary of the published posts.
runtime: python
timeout: 5s
memory: 128MiB
input:
  since: { type: timestamp, nullable: true }
rule: "auth != null"
"""
TITLES = [
    "Shipping a backend in an afternoon", "Keyset pagination, explained", "SQLite in production",
    "Realtime without the pain", "Rules as code", "A week with Alyx", "Migrations that do not hurt",
    "Writing functions in Node", "Writing functions in Python", "Deploys and rollbacks",
    "Indexes worth having", "The admin UI tour", "Rate limits that hold", "Backups, simply",
    "Typed clients for free", "One file, many workers", "Notes on WAL mode", "CSRF, in short",
]  # fmt: skip
WORDS = ["alyx", "keeps", "the", "data", "in", "one", "sqlite", "file", "and", "serves", "it", "with"]


class Api:
    """JSON over HTTP to the demo server."""

    def __init__(self, url: str) -> None:
        self.url = url

    def call(self, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        with urllib.request.urlopen(request, timeout=DEADLINE) as answer:
            text = answer.read()
        return json.loads(text) if text else None


def make_project(folder: Path, env: dict[str, str]) -> Path:
    project = folder / "blog"
    subprocess.run(
        [str(ALYX), "init", "blog", "-t", "blog"], cwd=folder, env=env, check=True, capture_output=True
    )
    (project / "functions" / "digest.py").write_text(DIGEST_PY)
    (project / "functions" / "digest.yaml").write_text(DIGEST_YAML)
    with (project / "alyx.yaml").open("a") as config:
        config.write("\nadmin_ui:\n  enabled: true\n")
    return project


def alyx(project: Path, env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        [str(ALYX), *args], cwd=project, env=env, input=stdin, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def fill(api: Api, project: Path, env: dict[str, str]) -> None:
    """Users, posts, comments and function calls, as an app would make them."""
    alyx(project, env, "admin", "create", ADMIN, "--password-stdin", stdin=PASSWORD + "\n")
    alyx(project, env, "admin", "create-token", "--name", "ci-deploys")
    users = []
    for name in ("ada", "grace", "linus", "margaret", "ken"):
        email = f"{name}@example.com"
        api.call("POST", "/api/auth/register", {"email": email, "password": PASSWORD})
        login = api.call("POST", "/api/auth/login", {"email": email, "password": PASSWORD})
        users.append((login["user"]["id"], login["tokens"]["access_token"]))
    posts = []
    for i, title in enumerate(TITLES):
        author, token = users[i % len(users)]
        body = " ".join(WORDS[(i + j) % len(WORDS)] for j in range(40 + 17 * i))
        slug = "-".join(title.lower().replace(",", "").split())
        doc = api.call(
            "POST",
            "/api/collections/posts",
            {
                "title": title,
                "slug": slug,
                "body": body,
                "author_id": author,
                "tags": ["alyx", f"part-{i % 3}"],
            },
            token,
        )
        posts.append((doc["id"], token))
    for i, (post_id, token) in enumerate(posts):
        if i % 3 != 2:
            api.call("POST", "/api/functions/publish", {"input": {"post_id": post_id}}, token)
        commenter_id, commenter = users[(i + 1) % len(users)]
        api.call(
            "POST",
            "/api/collections/comments",
            {"post_id": post_id, "author_id": commenter_id, "body": f"Comment number {i + 1}: nice post."},
            commenter,
        )
    for _user_id, token in users[:3]:
        api.call("POST", "/api/functions/digest", {"input": {}}, token)


def traffic(api: Api, stop: threading.Event) -> None:
    """Requests for the logs page to show while it is open."""
    paths = [
        "/api/collections/posts?limit=5",
        "/api/collections/comments?limit=3",
        "/health",
        "/api/collections/posts?where=doc.published",
        "/api/collections/nope",
    ]
    i = 0
    while not stop.is_set():
        with contextlib.suppress(OSError):
            api.call("GET", paths[i % len(paths)])
        i += 1
        stop.wait(0.15)


def shoot(url: str, out: Path) -> list[Path]:
    from playwright.sync_api import sync_playwright

    written: list[Path] = []
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        for scheme in ("light", "dark"):
            context = browser.new_context(viewport=DESKTOP, color_scheme=scheme, device_scale_factor=1)
            page = context.new_page()
            page.on(
                "console",
                lambda m: errors.append(f"{m.location.get('url')}: {m.text}") if m.type == "error" else None,
            )
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url + "/_admin/login")
            page.screenshot(path=str(out / f"login-{scheme}.png"))
            written.append(out / f"login-{scheme}.png")
            page.fill("#email", ADMIN)
            page.fill("#password", PASSWORD)
            with page.expect_navigation():
                page.click("#sign-in")
            nav = page.eval_on_selector_all(
                "nav.nav a", "links => links.map(a => [a.textContent.trim(), a.getAttribute('href')])"
            )
            for title, href in nav:
                name = title.lower().replace(" ", "-")
                page.goto(url + href)
                page.wait_for_load_state("networkidle")
                if name == "logs":
                    page.wait_for_selector("#logs tbody tr:nth-child(12)")
                written.append(_save(page, out / f"{name}-{scheme}.png"))
            for name, path, action in _details(page, url):
                page.goto(url + path)
                page.wait_for_load_state("networkidle")
                if action is not None:
                    action(page)
                written.append(_save(page, out / f"{name}-{scheme}.png"))
            context.close()
        phone = browser.new_context(viewport=PHONE, color_scheme="light", device_scale_factor=2)
        page = phone.new_page()
        page.goto(url + "/_admin/login")
        page.fill("#email", ADMIN)
        page.fill("#password", PASSWORD)
        with page.expect_navigation():
            page.click("#sign-in")
        for name, path in (
            ("overview", "/_admin/"),
            ("data-posts", "/_admin/data/posts"),
            ("logs", "/_admin/logs"),
        ):
            page.goto(url + path)
            page.wait_for_load_state("networkidle")
            if name == "logs":
                page.wait_for_selector("#logs tbody tr:nth-child(8)")
            written.append(_save(page, out / f"{name}-phone.png"))
        browser.close()
    if errors:
        raise SystemExit("console errors:\n" + "\n".join(errors))
    return written


def _save(page: Any, path: Path) -> Path:
    page.wait_for_timeout(300)  # let the live modules draw their first update
    page.screenshot(path=str(path))
    return path


def _invoke(page: Any) -> None:
    page.fill("#invoke-input", '{"since": null}')
    page.click("#invoke")
    page.wait_for_selector("#result-status")
    page.locator("#recent tbody tr details").first.evaluate("d => d.open = true")


def _details(page: Any, url: str) -> list[tuple[str, str, Any]]:
    """The pages behind the navigation worth a picture: a collection, a document, a function."""
    shots: list[tuple[str, str, Any]] = [
        ("data-posts", "/_admin/data/posts", None),
        ("function-digest", "/_admin/functions/digest", _invoke),
    ]
    page.goto(url + "/_admin/data/posts")
    link = page.locator("a[href*='/_admin/data/posts/doc/']").first
    if link.count():
        shots.insert(1, ("data-doc", str(link.get_attribute("href")), None))
    return shots


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"where the PNGs go (default {OUT})")
    options = parser.parse_args()
    out: Path = options.out
    out.mkdir(parents=True, exist_ok=True)
    env = cli_environment(
        ALYX_AUTH_JWT_SECRET=SECRET,
        ALYX_AUTH_BCRYPT_COST="4",
        ALYX_AUTH_RATE_LIMIT_REGISTER="off",
        ALYX_AUTH_RATE_LIMIT_LOGIN="off",
        ALYX_SERVER_WORKERS="2",
    )
    with tempfile.TemporaryDirectory(prefix="alyx-screenshots-") as tmp:
        project = make_project(Path(tmp), env)
        alyx(project, env, "migrate", "apply")
        server = AlyxProcess(project, "serve", env=env, log=Path(tmp) / "server.log").start()
        stop = threading.Event()
        try:
            api = Api(server.url)
            fill(api, project, env)
            background = threading.Thread(target=traffic, args=(api, stop), daemon=True)
            background.start()
            time.sleep(0.5)
            for path in shoot(server.url, out):
                print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
        finally:
            stop.set()
            server.stop()


if __name__ == "__main__":
    sys.exit(main())
