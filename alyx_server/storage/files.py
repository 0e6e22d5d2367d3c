"""File fields' values: the metadata stored in the document, its keys, and edits of it.

A single file field holds one object, a multiple one (`maxFiles` > 1) a list of them, and
`null` when there is no file:

    {"name": "photo_k3j9x0a2qz.png", "size": 48213, "type": "image/png",
     "sha256": "9f86d0...", "key": "posts/cover/5d41402abc4b2a76b9719d911017c592/photo_k3j9x0a2qz.png"}

`name` is the sanitised upload name with a random suffix (storage/names.py) and is what
the download URL names; `type` is sniffed from the bytes (storage/sniff.py); `key` is where
the bytes live in the storage backend, `<collection>/<field>/<32 hex>/<name>`, with the
file's thumbnails under `<...32 hex>/thumbs/`. So a file with its thumbnails goes with one
`delete_prefix(folder_of(key))`, a dropped field with `delete_prefix("<collection>/<field>/")`.

`FileEdit` is what one request asks of one field (replace with uploads, append, remove
by name, clear); `apply_edit` turns the stored value and an edit into the new value and the
keys the commit releases (deleted after it, never before).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from alyx_server.errors import FieldIssue, ValidationError
from alyx_server.schema.model import Field

__all__ = [
    "FileEdit",
    "apply_edit",
    "field_prefix",
    "file_entries",
    "find_file",
    "folder_of",
    "metadata",
    "new_key",
]


def new_key(collection: str, field_name: str, name: str) -> str:
    """A fresh storage key for a file named `name` of `collection.field_name`."""
    return f"{collection}/{field_name}/{uuid.uuid4().hex}/{name}"


def folder_of(key: str) -> str:
    """The prefix holding a file and its thumbnails (`.../<32 hex>/`)."""
    return key.rsplit("/", 1)[0] + "/"


def field_prefix(collection: str, field_name: str) -> str:
    return f"{collection}/{field_name}/"


def metadata(name: str, size: int, mime: str, sha256: str, key: str) -> dict[str, Any]:
    return {"name": name, "size": size, "type": mime, "sha256": sha256, "key": key}


def file_entries(value: Any) -> list[dict[str, Any]]:
    """The file objects of a stored value (one object, a list, or null)."""
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, dict)]
    return []


def find_file(value: Any, name: str) -> dict[str, Any] | None:
    return next((f for f in file_entries(value) if f.get("name") == name), None)


@dataclass(slots=True)
class FileEdit:
    """One request's change to one file field.

    `replace`: the uploads sent under the field's own name (they replace what was stored);
    `append`: uploads sent as `<field>+` (multiple fields); `remove`: names sent as
    `<field>-`; `clear`: the field set to null (or `[]`).
    """

    replace: list[dict[str, Any]] | None = None
    append: list[dict[str, Any]] = field(default_factory=list)
    remove: list[str] = field(default_factory=list)
    clear: bool = False

    def uploaded(self) -> Iterable[dict[str, Any]]:
        yield from self.replace or ()
        yield from self.append


def apply_edit(f: Field, stored: Any, edit: FileEdit) -> tuple[Any, list[str]]:
    """The field's new value and the keys no longer referenced, or a ValidationError."""
    options = f.file
    assert options is not None
    old = file_entries(stored)
    files = [] if edit.clear else list(old)
    if edit.replace is not None:
        files = list(edit.replace)
    missing = [n for n in edit.remove if not any(x.get("name") == n for x in files)]
    if missing:
        message = f"{f.name} has no file named {missing[0]!r}"
        raise ValidationError(message, [FieldIssue(f.name, "file_not_found", message)])
    files = [x for x in files if x.get("name") not in edit.remove] + edit.append
    if len(files) > options.max_files:
        message = f"{f.name} holds at most {options.max_files} file(s); {len(files)} given"
        raise ValidationError(message, [FieldIssue(f.name, "max_files", message)])
    kept = {x.get("key") for x in files}
    released = [str(x["key"]) for x in old if x.get("key") not in kept and isinstance(x.get("key"), str)]
    if not files:
        return None, released
    return (files if options.multiple else files[0]), released
