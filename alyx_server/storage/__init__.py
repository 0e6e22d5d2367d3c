"""File storage: the bytes of `file` fields, behind one `Storage` interface.

`backend.Storage` is what every backend implements (see its docstring for the guarantees);
`local.LocalStorage` is the folder backend (`storage.backend: local`), `s3.S3Storage` the
bucket one (`storage.backend: s3`). `files` holds the
metadata documents store and the edits of it, `names` the filename sanitiser, `sniff` the
content-type detection, `thumbs` the thumbnails and `tokens` the file tokens of protected
fields. `open_storage(settings)` builds the configured backend.

The S3 backend (aiobotocore and botocore, about 12 MiB of every server process) is
imported only when it is used: by `open_storage` for `storage.backend: s3`, or by the first
`from alyx_server.storage import S3Storage`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
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
        from alyx_server.storage.s3 import S3Options, S3Storage

        s3 = config.s3
        return S3Storage(S3Options(s3.bucket, s3.endpoint or None, s3.region, s3.path_style, s3.prefix))
    return LocalStorage(config.path)


def __getattr__(name: str) -> object:
    """`S3Options` and `S3Storage`, imported on first use (see the module docstring)."""
    if name in ("S3Options", "S3Storage"):
        from alyx_server.storage import s3

        return getattr(s3, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
