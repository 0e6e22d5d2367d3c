"""File storage: the bytes of `file` fields, behind one `Storage` interface.

`backend.Storage` is what every backend implements (see its docstring for the guarantees);
`local.LocalStorage` is the folder backend (`storage.backend: local`). `files` holds the
metadata documents store and the edits of it, `names` the filename sanitiser, `sniff` the
content-type detection, `thumbs` the thumbnails and `tokens` the file tokens of protected
fields. `open_storage(settings)` builds the configured backend.
"""

from __future__ import annotations

from alyx_server.config import Settings
from alyx_server.storage.backend import (
    InvalidKey,
    ObjectInfo,
    ObjectMissing,
    ObjectTooLarge,
    Storage,
    StorageUnavailable,
    StoredObject,
)
from alyx_server.storage.local import LocalStorage

__all__ = [
    "InvalidKey",
    "LocalStorage",
    "ObjectInfo",
    "ObjectMissing",
    "ObjectTooLarge",
    "Storage",
    "StorageUnavailable",
    "StoredObject",
    "open_storage",
]


def open_storage(settings: Settings) -> Storage:
    """The backend `storage.backend` names, configured from `settings`."""
    return LocalStorage(settings.storage.path)
