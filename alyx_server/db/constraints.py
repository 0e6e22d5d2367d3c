"""SQLite's constraint errors become Alyx errors here, and nowhere else.

SQLite raises `sqlite3.IntegrityError` for every failed constraint and says which in
its message:

    UNIQUE constraint failed: posts.slug, posts.owner     (columns of a unique index)
    UNIQUE constraint failed: index 'uq_posts_lower'      (an index on an expression)
    NOT NULL constraint failed: posts.title
    FOREIGN KEY constraint failed                          (never which key)
    CHECK constraint failed: <name or expression>

`violation_of(error)` reads the message into a `ConstraintViolation`.
`map_integrity_errors(translate)` wraps the statements that may fail, as httpx's
`map_httpcore_exceptions` wraps its transport: `translate` says what the violation
means where it happened (a document's 409 UNIQUE_VIOLATION, an account's USER_EXISTS,
a migration's refusal) and the AlyxError it returns is raised from the IntegrityError;
None lets the IntegrityError through unchanged (a constraint the caller did not expect
is a bug, and is reported as one).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Literal

from alyx_server.errors import AlyxError

__all__ = ["ConstraintKind", "ConstraintViolation", "Translate", "map_integrity_errors", "violation_of"]

ConstraintKind = Literal["unique", "not_null", "foreign_key", "check", "other"]

_PREFIXES: tuple[tuple[str, ConstraintKind], ...] = (
    ("UNIQUE constraint failed:", "unique"),
    ("NOT NULL constraint failed:", "not_null"),
    ("CHECK constraint failed:", "check"),
)


@dataclass(frozen=True, slots=True)
class ConstraintViolation:
    """One failed constraint, as SQLite reported it."""

    kind: ConstraintKind
    table: str | None
    columns: tuple[str, ...]
    message: str
    """SQLite's own words (for logs and migration refusals, never for API clients)."""


Translate = Callable[[ConstraintViolation], AlyxError | None]
"""What a violation means to the caller: the AlyxError to raise, or None (not expected)."""


def violation_of(error: sqlite3.IntegrityError) -> ConstraintViolation:
    """The constraint `error` reports (kind `other` for a message of an unknown form)."""
    text = str(error)
    if "FOREIGN KEY constraint failed" in text:
        return ConstraintViolation("foreign_key", None, (), text)
    for prefix, kind in _PREFIXES:
        if text.startswith(prefix):
            detail = text[len(prefix) :].strip()
            if kind == "check" or detail.startswith("index "):
                return ConstraintViolation(kind, None, (), text)
            table: str | None = None
            columns: list[str] = []
            for part in detail.split(","):
                owner, _, column = part.strip().rpartition(".")
                table = owner or table
                columns.append(column)
            return ConstraintViolation(kind, table, tuple(columns), text)
    return ConstraintViolation("other", None, (), text)


class map_integrity_errors:
    """`with map_integrity_errors(translate): ...` turns an IntegrityError raised inside
    into `translate`'s AlyxError (`raise ... from` the original); see the module docstring.
    A class rather than `@contextmanager`: it wraps every document write."""

    __slots__ = ("_translate",)

    def __init__(self, translate: Translate) -> None:
        self._translate = translate

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> Literal[False]:
        if not isinstance(error, sqlite3.IntegrityError):
            return False
        mapped = self._translate(violation_of(error))
        if mapped is None:
            return False
        raise mapped from error
