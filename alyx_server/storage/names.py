"""Uploaded file names made safe to store, show and put in a URL or a header.

A client's file name is only a hint: `safe_name` keeps its last path segment, normalises
it (NFKC, so full-width and other look-alike characters become their plain forms: full-width dots and slash
become `../`, then go), drops control and format characters (NUL, CR/LF, the bidi overrides
that make `gpj.exe` read as `exe.jpg`), replaces anything but letters, digits, `.`, `-`
and `_` by `_`, refuses leading dots (no `..`, no hidden files) and bounds the length
(`MAX_NAME` characters, the extension kept). The stored name adds a random suffix before
the extension (`photo_k3j9x0a2qz.png`), so two uploads never share a name.
"""

from __future__ import annotations

import re
import secrets
import string
import unicodedata

__all__ = ["MAX_NAME", "safe_name", "stored_name"]

MAX_NAME = 100
_MAX_EXT = 16
_UNSAFE = re.compile(r"[^\w.\-]+")
_REPEATS = re.compile(r"([._\-])\1+")
_SUFFIX_ALPHABET = string.ascii_lowercase + string.digits


def safe_name(raw: str | None) -> str:
    """A name made only of letters, digits, `.`, `-` and `_`, at most MAX_NAME characters."""
    text = unicodedata.normalize("NFKC", raw or "")
    text = re.split(r"[/\\]", text)[-1]
    text = "".join(ch for ch in text if not unicodedata.category(ch).startswith(("C", "Z")) or ch == " ")
    text = _UNSAFE.sub("_", text.strip())
    text = _REPEATS.sub(r"\1", text).lstrip("._-")
    stem, dot, ext = text.rpartition(".")
    if not dot or not stem or len(ext) > _MAX_EXT or not ext:
        stem, ext = text.rstrip("."), ""
    stem = stem.rstrip("._-")[: MAX_NAME - len(ext) - 1] or "file"
    return f"{stem}.{ext.lower()}" if ext else stem


def stored_name(raw: str | None) -> str:
    """`safe_name(raw)` with a random 10-character suffix before the extension."""
    name = safe_name(raw)
    suffix = "".join(secrets.choice(_SUFFIX_ALPHABET) for _ in range(10))
    stem, dot, ext = name.rpartition(".")
    if not dot:
        return f"{name[: MAX_NAME - 11]}_{suffix}"
    return f"{stem[: MAX_NAME - 12 - len(ext)]}_{suffix}.{ext}"
