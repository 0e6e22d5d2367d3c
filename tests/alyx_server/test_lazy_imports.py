"""What a server process loads at start (docs/workers.md, "Memory").

Libraries that only a feature needs are imported when the feature is first used, and the
`alyx` command imports only the command it runs, so each of these stays out of a fresh
interpreter that imports the application (each worker does), or the supervisor's modules.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

_FEATURE_LIBRARIES = ("aiobotocore", "botocore", "PIL", "authlib", "joserfc", "jwt", "cryptography",
                      "celpy", "jinja2", "textual")  # fmt: skip


def _loaded(code: str) -> set[str]:
    """The top-level packages loaded after running `code` in a fresh interpreter."""
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout.splitlines()[-1]))


def test_the_application_loads_no_feature_library() -> None:
    loaded = _loaded("import alyx_server.app, alyx_server.workers.worker")
    assert loaded.isdisjoint(_FEATURE_LIBRARIES), sorted(loaded.intersection(_FEATURE_LIBRARIES))


@pytest.mark.parametrize(
    ("name", "package"),
    [
        ("alyx_server.storage", "aiobotocore"),
        ("alyx_server.rules.cel", "celpy"),
        ("alyx_server.auth.oauth_providers", "authlib"),
    ],
)
def test_the_feature_modules_still_import_their_library(name: str, package: str) -> None:
    code = f"import {name} as m\nm = getattr(m, 'S3Storage', m)"
    assert package in _loaded(code)


def test_the_supervisor_of_alyx_serve_loads_no_application() -> None:
    # What `alyx serve --workers N` imports before it forks (commands/serve.py, _supervise).
    code = (
        "import alyx_cli.main, alyx_cli.commands.serve, alyx_cli.listen\n"
        "import alyx_server.config, alyx_server.listeners, alyx_server.logs, alyx_server.metrics\n"
        "import alyx_server.workers"
    )
    loaded = _loaded(code)
    assert loaded.isdisjoint({"aiohttp", "lark", *_FEATURE_LIBRARIES})
    assert "alyx_cli.commands.migrate" not in _modules("import alyx_cli.main")


def _modules(code: str) -> set[str]:
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout.splitlines()[-1]))


def test_access_tokens_are_signed_and_checked_without_a_jwt_library() -> None:
    code = (
        "from alyx_server.auth.tokens import TokenSigner\n"
        "from alyx_server.tools.timestamps import SystemClock\n"
        "s = TokenSigner('k' * 40, issuer='alyx', access_ttl=60, clock=SystemClock())\n"
        "t, _ = s.issue(user_id='u', session_id='s', email='a@b.c', role='user', verified=True)\n"
        "assert s.check(t).user_id == 'u'"
    )
    assert _loaded(code).isdisjoint({"jwt", "cryptography"})
