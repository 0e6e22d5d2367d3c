"""A reader for the protobuf text format subset of the CEL conformance files.

Messages become dicts; a field seen more than once becomes a list (`test`, `section`,
`entries`, `values`); strings are kept as bytes until the caller knows whether the
field is `string_value` (UTF-8) or `bytes_value`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

__all__ = ["Case", "load_cases", "read_textproto"]

_TOKEN = re.compile(
    r"""\s+|\#[^\n]*|(?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')|(?P<punct>[{}:,;\[\]<>])|(?P<word>[^\s{}:,;\[\]<>"'#]+)""",
    re.S,
)
_REPEATED = {"section", "test", "entries", "values", "errors", "type_env", "bindings"}


def _unescape(body: str) -> bytes:
    out = bytearray()
    i = 0
    simple = {"n": 10, "t": 9, "r": 13, "a": 7, "b": 8, "f": 12, "v": 11, "\\": 92, "'": 39, '"': 34, "?": 63}
    while i < len(body):
        c = body[i]
        if c != "\\":
            out += c.encode()
            i += 1
            continue
        n = body[i + 1]
        if n in simple:
            out.append(simple[n])
            i += 2
        elif n in "xX":
            m = re.match(r"[0-9a-fA-F]{1,2}", body[i + 2 :])
            assert m
            out.append(int(m.group(), 16))
            i += 2 + len(m.group())
        elif n in "uU":
            width = 4 if n == "u" else 8
            out += chr(int(body[i + 2 : i + 2 + width], 16)).encode()
            i += 2 + width
        elif n.isdigit():
            m = re.match(r"[0-7]{1,3}", body[i + 1 :])
            assert m
            out.append(int(m.group(), 8))
            i += 1 + len(m.group())
        else:
            raise ValueError(f"unknown escape \\{n}")
    return bytes(out)


def _tokens(text: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for m in _TOKEN.finditer(text):
        if m.group("str") is not None:
            s = m.group("str")
            value = _unescape(s[1:-1])
            if out and out[-1][0] == "str":  # adjacent string literals concatenate
                out[-1] = ("str", out[-1][1] + value)
            else:
                out.append(("str", value))
        elif m.group("punct") is not None:
            out.append(("p", m.group("punct")))
        elif m.group("word") is not None:
            out.append(("w", m.group("word")))
    return out


def _message(tokens: list[tuple[str, Any]], pos: int, end: str | None) -> tuple[dict[str, Any], int]:
    msg: dict[str, Any] = {}
    while pos < len(tokens):
        kind, value = tokens[pos]
        if kind == "p" and value == end:
            return msg, pos + 1
        if kind == "p" and value in ",;":
            pos += 1
            continue
        name = value
        pos += 1
        if tokens[pos] == ("p", ":"):
            pos += 1
        kind, value = tokens[pos]
        if kind == "p" and value in "{<":
            item, pos = _message(tokens, pos + 1, "}" if value == "{" else ">")
        else:
            item, pos = _scalar(kind, value), pos + 1
        if name in _REPEATED:
            msg.setdefault(name, []).append(item)
        else:
            msg[name] = item
    return msg, pos


def _scalar(kind: str, value: Any) -> Any:
    if kind == "str":
        return value
    if value in ("true", "false"):
        return value == "true"
    try:
        return int(value)
    except ValueError:
        pass
    try:
        return float(value)
    except ValueError:
        return value


def read_textproto(path: Path) -> dict[str, Any]:
    msg, _ = _message(_tokens(path.read_text()), 0, None)
    return msg


class Case:
    """One conformance test: file/section/name, expression, bindings and expectation."""

    def __init__(self, file: str, section: str, test: dict[str, Any]) -> None:
        self.file, self.section = file, section
        self.name = test["name"].decode()
        self.expr = test["expr"].decode()
        self.raw = test
        self.container = test.get("container", b"").decode() if "container" in test else ""
        self.disable_check = bool(test.get("disable_check", False))

    @property
    def id(self) -> str:
        return f"{self.file}/{self.section}/{self.name}"


def load_cases(folder: Path) -> list[Case]:
    cases = []
    for path in sorted(folder.glob("*.textproto")):
        data = read_textproto(path)
        for section in data.get("section", []):
            for test in section.get("test", []):
                cases.append(Case(path.stem, section["name"].decode(), test))
    return cases
