"""`${VAR}` and `${VAR:-default}` substitution in strings, from a given environment mapping.

`${VAR:-default}` uses the default when VAR is unset or empty; `$${` writes a literal `${`.
A `$` not followed by `{` is left alone, so passwords containing `$` need no escaping.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = ["UnsetVariable", "substitute"]

_REFERENCE = re.compile(r"\$\$\{|\$\{(?P<body>[^}]*)\}|\$\{")
_BODY = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>.*))?", re.DOTALL)
_FORMS = "use ${NAME} or ${NAME:-default}; write $${ for a literal ${"


class UnsetVariable(ValueError):
    """`${NAME}` names a variable that is not set and gives no default."""

    def __init__(self, name: str) -> None:
        hint = f"set {name}, or give a default: ${{{name}:-value}}"
        super().__init__(f"${{{name}}} is not set ({hint})")
        self.name = name


def substitute(text: str, environ: Mapping[str, str]) -> str:
    """Replace every `${...}` in `text` from `environ`; ValueError for a malformed reference."""
    if "${" not in text:
        return text

    def replace(match: re.Match[str]) -> str:
        whole = match.group(0)
        if whole == "$${":
            return "${"
        body = match.group("body")
        if body is None:
            raise ValueError(f"unclosed ${{ in {text!r} ({_FORMS})")
        parsed = _BODY.fullmatch(body)
        if parsed is None:
            raise ValueError(f"bad variable reference {whole!r} ({_FORMS})")
        value = environ.get(parsed.group("name"))
        default = parsed.group("default")
        if default is not None and not value:
            return default
        if value is None:
            raise UnsetVariable(parsed.group("name"))
        return value

    return _REFERENCE.sub(replace, text)
