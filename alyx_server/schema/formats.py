"""The `format:` options of string fields, each defined by one RE2 pattern.

The OpenAPI document publishes these same patterns (as JSON Schema `pattern`), so what a
client's validator accepts is exactly what the server accepts:

- `email`: local part `@` two or more dot-separated labels (`a@example.com`). No
  whitespace, control characters or second `@`; a dotless domain (`a@localhost`) is
  refused, as it cannot be delivered to from the internet. JSON Schema's `format: email`
  (RFC 5321, which allows `a@localhost` and quoted local parts) is not what this checks,
  so the document does not claim it.
- `url`: `http://` or `https://` (any case), an optional `user@`, a host (a name or an
  `[IPv6]` literal), an optional `:port`, then an optional path, query or fragment; no
  whitespace or control characters anywhere. Other schemes (`ftp://`,
  `mailto:`) are refused; JSON Schema's `format: uri` allows them, so the document does
  not claim it either.
- `uuid`: the canonical 8-4-4-4-12 hex form, any case (the same as JSON Schema's `uuid`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

from alyx_server.schema.patterns import compile_pattern

__all__ = ["FORMAT_CHECKS", "FORMAT_PATTERNS"]

# Characters no address or URL may hold: C0 controls, space and DEL.
_BANNED = r"\x00-\x20\x7f"
_LABEL = rf"[^@.{_BANNED}]+"

FORMAT_PATTERNS: Mapping[str, str] = MappingProxyType(
    {
        "email": rf"^[^@{_BANNED}]+@{_LABEL}(?:\.{_LABEL})+$",
        "url": (
            rf"^[Hh][Tt][Tt][Pp][Ss]?://(?:[^/?#@\[\]{_BANNED}]*@)?"
            rf"(?:[^/?#@\[\]:{_BANNED}]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{{1,5}})?(?:[/?#][^{_BANNED}]*)?$"
        ),
        "uuid": r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
    }
)


def _check(source: str) -> Callable[[str], bool]:
    return compile_pattern(source).matches


FORMAT_CHECKS: Mapping[str, Callable[[str], bool]] = MappingProxyType(
    {name: _check(source) for name, source in FORMAT_PATTERNS.items()}
)
"""The `format:` checks, the same definitions the write path applies (db.validation)."""
