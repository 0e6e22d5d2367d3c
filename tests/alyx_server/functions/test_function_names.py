"""Function names as JavaScript users write them (`sendMessage`), and one true message per
problem in the log of a real `alyx dev` process, never a second, misleading one."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp

from alyx_server.functions import Defaults, discover_functions
from tests.alyx_cli.test_serve import Server, project, servers, start

__all__ = ["project", "servers"]

HANDLER = """from alyx_functions import define_function

f = define_function(handler=lambda input, ctx: {"sent": input["text"].upper()})
"""
OPEN = "rule: 'true'\ninput: { text: { type: string } }\noutput: { sent: { type: string } }\n"
NAME_RULE = (
    "a function name starts with a lower-case letter, then letters, digits, _ or - (getStats, "
    "get_stats, get-stats): it is the URL /api/functions/<name> and a method of the generated clients"
)


def write(folder: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = folder / "functions" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return folder / "functions"


async def post(url: str, body: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.post(url, json=body) as response:
        return response.status, await response.json()


def test_each_problem_is_logged_once_with_its_true_cause(project: Path, servers: list[Server]) -> None:
    write(
        project,
        {
            "sendMessage.py": HANDLER,
            "sendMessage.yaml": OPEN,
            # A valid camelCase name whose manifest is wrong: the manifest's error, not
            # "a manifest without a function: add getStats.py" (it is there).
            "getStats.py": HANDLER,
            "getStats.yaml": "timeout: soon\nrule: 'true'\n",
            # An invalid name with a manifest: the name's problem only.
            "2fa.py": HANDLER,
            "2fa.yaml": OPEN,
            # Two sources with a manifest: that problem only.
            "report.py": HANDLER,
            "report.mjs": "export default 1;\n",
            "report.yaml": OPEN,
            "orphan.yaml": OPEN,
        },
    )
    server = start(project, "dev", "--no-watch")
    servers.append(server)
    status, body = asyncio.run(post(server.url + "/api/functions/sendMessage", {"input": {"text": "hi"}}))
    assert (status, body["success"], body["output"]) == (200, True, {"sent": "HI"})
    assert server.stop() == 0
    logged = [
        line.split(" function not served: ", 1)[1]
        for line in server.stderr.splitlines()
        if " function not served: " in line
    ]
    assert sorted(logged) == sorted(
        [
            "functions/getStats.yaml:1:10: timeout: 'soon' is not a duration such as 10s "
            "(e.g. timeout: 10s, memory: 128MiB)",
            f"functions/2fa.py: '2fa' is not a valid function name: {NAME_RULE}; rename it and its "
            "manifest functions/2fa.yaml",
            "functions/report.mjs: function 'report' has several sources (functions/report.mjs, "
            "functions/report.py); keep one",
            "functions/orphan.yaml: a manifest without a function: add orphan.py, orphan.mjs or "
            "orphan/index.mjs beside it",
        ]
    ), server.stderr


def test_names_that_differ_only_in_case_or_separators_are_refused(tmp_path: Path) -> None:
    folder = write(
        tmp_path,
        {
            "sendMessage.py": HANDLER,
            "send_message.py": HANDLER,
            "send-message/index.mjs": "export default 1;\n",
            "getStats.py": HANDLER,
            "Upper.py": HANDLER,
            "bad name.py": HANDLER,
            "trailing\n.py": HANDLER,
        },
    )
    found = discover_functions(folder, Defaults(), root=tmp_path)
    assert sorted(found.functions) == ["getStats"]
    problems = {p.name: p.message for p in found.problems}
    assert len(problems) == len(found.problems) == 6
    assert problems["sendMessage"] == (
        "functions/sendMessage.py: function 'sendMessage' and 'send-message' "
        "(functions/send-message/index.mjs), 'send_message' (functions/send_message.py) differ only "
        "in case, _ or -, which the generated clients and case-insensitive file systems cannot tell "
        "apart; rename one"
    )
    assert problems["send_message"].startswith("functions/send_message.py: function 'send_message' and ")
    for name in ("Upper", "bad name", "trailing\n"):
        assert (
            problems[name]
            == f"functions/{name}.py: {name!r} is not a valid function name: {NAME_RULE}; rename it"
        )
