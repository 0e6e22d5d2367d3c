"""The `sql` operation's text, split into statements that run inside the migration's transaction.

`sqlite3.Connection.executescript` commits before it starts, which would break the promise
that a migration and its history row commit together; statements are therefore split
(with `sqlite3.complete_statement`, which knows quotes and comments) and executed one by
one. Statements that end or nest the transaction are refused up front.
"""

from __future__ import annotations

import re
import sqlite3

__all__ = ["FORBIDDEN_STATEMENTS", "ScriptError", "split_statements"]

# Each would end the migration's transaction, or cannot run inside one.
FORBIDDEN_STATEMENTS = (
    "BEGIN", "COMMIT", "END", "ROLLBACK", "SAVEPOINT", "RELEASE", "VACUUM", "ATTACH", "DETACH",
)  # fmt: skip

_COMMENTS = re.compile(r"--[^\n]*|/\*.*?(\*/|$)", re.DOTALL)
_FIRST_WORD = re.compile(r"[A-Za-z]+")


class ScriptError(ValueError):
    """SQL text that cannot run as part of a migration."""


def _code(text: str) -> str:
    return _COMMENTS.sub(" ", text).strip().strip(";").strip()


def _check(statement: str) -> str:
    match = _FIRST_WORD.match(_code(statement))
    word = match.group(0).upper() if match else ""
    if word in FORBIDDEN_STATEMENTS:
        raise ScriptError(
            f"{word} is not allowed: each migration already runs in one transaction "
            "that Alyx opens and commits"
        )
    return statement


def split_statements(script: str) -> list[str]:
    """The statements of `script`, each complete and ending with `;`; comments-only parts drop."""
    statements: list[str] = []
    pieces = script.split(";")
    buffer = ""
    for piece in pieces[:-1]:
        buffer += piece + ";"
        if sqlite3.complete_statement(buffer):
            if _code(buffer):
                statements.append(_check(buffer.strip()))
            buffer = ""
    buffer += pieces[-1]
    if _code(buffer):
        # A new line first: the last line may be a `--` comment.
        if not sqlite3.complete_statement(buffer + "\n;"):
            raise ScriptError(f"incomplete SQL statement: {buffer.strip()[:60]!r}")
        statements.append(_check(buffer.strip() + "\n;"))
    return statements
