"""File storage: the bytes of `file` fields, behind one `Storage` interface.

`backend.Storage` is what every backend implements (see its docstring for the guarantees);
`local.LocalStorage` is the folder backend (`storage.backend: local`), `s3.S3Storage` the
bucket one (`storage.backend: s3`). `files` holds the
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
from alyx_server.storage.s3 import S3Options, S3Storage

__all__ = [
    "InvalidKey",
    "LocalStorage",
    "ObjectInfo",
    "ObjectMissing",
    "ObjectTooLarge",
    "S3Options",
    "S3Storage",
    "Storage",
    "StorageUnavailable",
    "StoredObject",
    "open_storage",
]


def open_storage(settings: Settings) -> Storage:
    """The backend `storage.backend` names, configured from `settings`."""
    config = settings.storage
    if config.backend == "s3":
        s3 = config.s3
        return S3Storage(S3Options(s3.bucket, s3.endpoint or None, s3.region, s3.path_style, s3.prefix))
    return LocalStorage(config.path)
