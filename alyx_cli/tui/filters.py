"""The request log's filter: space-separated terms, every one must hold.

GET, post             the method (any case)
404, 4xx, status:5xx  the status, exact or by class
user:ada              the caller's email or token kind contains the text
worker:2              served by that worker (exactly its name)
anything else         the path contains it (case-insensitive)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["METHODS", "RequestFilter"]

METHODS = frozenset({"GET", "POST", "PATCH", "PUT", "DELETE", "OPTIONS", "HEAD"})
_STATUS = re.compile(r"^(?:status:)?([1-5])(xx|\d\d)$", re.I)

Test = Callable[[Mapping[str, Any]], bool]


def _term(term: str) -> Test:
    found = _STATUS.match(term)
    if found:
        first, rest = found.groups()
        if rest.lower() == "xx":
            return lambda r: str(r.get("status", "")).startswith(first)
        code = int(first + rest)
        return lambda r: r.get("status") == code
    if term.upper() in METHODS:
        method = term.upper()
        return lambda r: r.get("method") == method
    if term.lower().startswith("user:"):
        who = term[5:].lower()
        return lambda r: who in str(r.get("user") or "anonymous").lower()
    if term.lower().startswith("worker:"):
        worker = term[7:]
        return lambda r: str(r.get("worker", "")) == worker
    text = term.lower()
    return lambda r: text in str(r.get("path", "")).lower()


class RequestFilter:
    """A parsed filter; an empty one matches everything."""

    __slots__ = ("_tests", "text")

    def __init__(self, text: str = "") -> None:
        self.text = text
        self._tests = tuple(_term(t) for t in text.split())

    def matches(self, request: Mapping[str, Any]) -> bool:
        return all(test(request) for test in self._tests)
