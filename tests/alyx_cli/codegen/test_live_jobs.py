"""The generated Python client queues a job on a real `alyx dev` and sees it done.

`sendWelcome` is a job whose rule lets a user queue it for themselves; it writes a
welcome post (privileged), which the same client then reads back.
"""

from __future__ import annotations

import importlib
import shutil
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests.alyx_cli.codegen.conftest import SCAFFOLDS, generate_project
from tests.servers import AlyxProcess, cli_environment

PASSWORD = "correct horse 1"
DEADLINE = 30.0

MANIFEST = """input:
  user_id: { type: uuid }
  title:   { type: string }
rule: "auth != null && input.user_id == auth.id"
privileged: true
job: { max_attempts: 3 }
"""

SOURCE = """from alyx_functions import define_function


async def handler(input, ctx):
    slug = "welcome-" + ctx.job["id"][:12]
    await ctx.db.posts.create(
        {"title": input["title"], "slug": slug, "author_id": input["user_id"], "published": False}
    )
    return {}


send_welcome = define_function(handler=handler)
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    project = tmp_path_factory.mktemp("live-jobs") / "blog"
    shutil.copytree(SCAFFOLDS / "blog", project)
    (project / "functions" / "sendWelcome.yaml").write_text(MANIFEST)
    (project / "functions" / "sendWelcome.py").write_text(SOURCE)
    env = cli_environment(ALYX_AUTH_RATE_LIMIT_REGISTER="off", ALYX_LOGGING_LEVEL="warning")
    with AlyxProcess(project, "dev", env=env, log=project / "server.log") as process:
        yield process.url, project


@pytest.fixture(scope="module")
def client_module(server: tuple[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    out = tmp_path_factory.mktemp("py-jobs-client")
    generate_project(server[1], out, ("python",))
    sys.path.insert(0, str(out / "python"))
    try:
        yield importlib.import_module("alyx_client")
    finally:
        sys.path.remove(str(out / "python"))
        for name in [m for m in sys.modules if m == "alyx_client" or m.startswith("alyx_client.")]:
            del sys.modules[name]


def test_a_user_queues_a_job_and_sees_it_done(client_module: ModuleType, server: tuple[str, Path]) -> None:
    mod = client_module
    tag = uuid.uuid4().hex[:8]
    with mod.Alyx(server[0]) as alyx, mod.Alyx(server[0]) as other:
        uid = alyx.auth.register(f"jobs-{tag}@example.com", PASSWORD)["user"]["id"]
        other.auth.register(f"jobs-other-{tag}@example.com", PASSWORD)
        queued = alyx.jobs.send_welcome.enqueue({"user_id": uid, "title": f"welcome {tag}"})
        assert queued["created"] is True and queued["state"] == "queued", queued
        query = alyx.posts.query().filter("author_id", "eq", uid)
        end = time.monotonic() + DEADLINE
        while not (docs := alyx.posts.list(query)["docs"]) and time.monotonic() < end:
            time.sleep(0.05)
        assert [d["title"] for d in docs] == [f"welcome {tag}"]
        assert docs[0]["slug"] == "welcome-" + queued["id"][:12]

        # A delayed job with a dedupe key: queued once, the second call returns it.
        first = alyx.jobs.send_welcome.enqueue({"user_id": uid, "title": "later"}, delay="1h", dedupe_key=tag)
        again = alyx.jobs.send_welcome.enqueue({"user_id": uid, "title": "later"}, delay=3600, dedupe_key=tag)
        assert first["created"] is True and again == {"id": first["id"], "created": False, "state": "queued"}

        # The rule: a user may not queue it for someone else; the input is checked.
        with pytest.raises(mod.ForbiddenError):
            other.jobs.send_welcome.enqueue({"user_id": uid, "title": "not yours"})
        with pytest.raises(mod.ValidationError):
            alyx.jobs.send_welcome.enqueue({"user_id": uid})  # no title
