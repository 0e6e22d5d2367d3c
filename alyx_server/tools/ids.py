"""Document ids: random version-4 UUID strings, and a cheap check that a string is one."""

from __future__ import annotations

import re
import uuid

__all__ = ["is_uuid", "new_id"]

_UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def new_id() -> str:
    """A new random id, `xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx` in lower case."""
    return str(uuid.uuid4())


def is_uuid(text: str) -> bool:
    """True when `text` is a UUID in the canonical 8-4-4-4-12 hex form (any case)."""
    return _UUID_RE.fullmatch(text) is not None
