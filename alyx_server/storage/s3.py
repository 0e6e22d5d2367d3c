"""The S3-compatible backend (`storage.backend: s3`): objects in one bucket, through
aiobotocore (botocore's own request signing and retries, on aiohttp).

Settings: `storage.s3.bucket`, `storage.s3.endpoint` (empty for AWS; MinIO, R2, Ceph,
Garage... otherwise), `storage.s3.region`, `storage.s3.path_style` (`bucket` in the path
instead of the host name, as most self-hosted servers want) and `storage.s3.prefix` (a
folder inside the bucket). Credentials come from the environment, never from alyx.yaml:
botocore's usual chain (`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, `AWS_PROFILE` and
the shared files, an instance or container role).

`put` keeps the Storage guarantees (backend.py) with bounded memory: it buffers up to one
part (`PART_SIZE`, 8 MiB); a file that fits is one `PutObject`, a larger one a multipart
upload whose parts are sent as they fill and which becomes visible only at
`CompleteMultipartUpload`. A failure aborts the multipart upload, so nothing is left under
the key. A process killed in the middle leaves an incomplete multipart upload (no object);
`list` reports each such upload as `.partial/<upload id>/<key>` with its start time, and
`delete` of that key aborts it, so the sweeper handles both backends alike. (A bucket
lifecycle rule `AbortIncompleteMultipartUpload` is a good second net.)

Errors: a connection that fails, times out or answers 5xx is `StorageUnavailable` (503);
`NoSuchKey` is `ObjectMissing`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from alyx_server.storage.backend import (
    CHUNK_SIZE,
    ObjectInfo,
    ObjectMissing,
    ObjectTooLarge,
    StorageUnavailable,
    StoredObject,
    check_key,
)

# aiobotocore's S3 client, typed by the types-aiobotocore stubs where it is made; named
# Any here so that the stubs stay a development dependency.
S3Client = Any

__all__ = ["PART_SIZE", "S3Options", "S3Storage"]

PART_SIZE = 8 * 1024 * 1024
"""Bytes buffered before a part is sent (S3 wants at least 5 MiB per part but the last)."""

_PARTIAL = ".partial/"
_MISSING = {"NoSuchKey", "404", "NotFound"}


@dataclass(frozen=True, slots=True)
class S3Options:
    """Where the bucket is; credentials are never part of it (see the module docstring)."""

    bucket: str
    endpoint: str | None = None
    region: str = "us-east-1"
    path_style: bool = False
    prefix: str = ""
    connect_timeout: float = 10.0
    read_timeout: float = 60.0


class S3Storage:
    """See the module docstring. The client is made on first use and closed by `close`."""

    name = "s3"

    def __init__(self, options: S3Options) -> None:
        self.options = options
        self._prefix = options.prefix.strip("/") + "/" if options.prefix.strip("/") else ""
        self._stack: AsyncExitStack | None = None
        self._client: S3Client = None
        self._lock = asyncio.Lock()

    async def _s3(self) -> S3Client:
        if self._client is not None:
            return self._client
        async with self._lock:
            if self._client is None:
                o = self.options
                config = AioConfig(
                    s3={"addressing_style": "path" if o.path_style else "auto"},
                    connect_timeout=o.connect_timeout,
                    read_timeout=o.read_timeout,
                    retries={"max_attempts": 2, "mode": "standard"},
                    # Checksums only when an operation needs them: S3-compatible servers
                    # vary in what they accept of the newer defaults.
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required",
                )
                stack = AsyncExitStack()
                creator = get_session().create_client(
                    "s3", region_name=o.region, endpoint_url=o.endpoint or None, config=config
                )
                self._client = await stack.enter_async_context(creator)
                self._stack = stack
        assert self._client is not None
        return self._client

    def _name(self, key: str) -> str:
        return self._prefix + check_key(key)

    async def put(self, key: str, chunks: AsyncIterable[bytes], *, max_size: int) -> StoredObject:
        name = self._name(key)
        s3 = await self._s3()
        digest = hashlib.sha256()
        size = 0
        buffer = bytearray()
        upload_id: str | None = None
        parts: list[dict[str, Any]] = []
        try:
            async for chunk in chunks:  # its own errors (a client gone) pass through as they are
                size += len(chunk)
                if size > max_size:
                    raise ObjectTooLarge(f"the file is over {max_size} bytes", max_size)
                digest.update(chunk)
                buffer += chunk
                if len(buffer) >= PART_SIZE:
                    if upload_id is None:
                        upload_id = await self._start(s3, name)
                    parts.append(await self._part(s3, name, upload_id, len(parts) + 1, bytes(buffer)))
                    buffer.clear()
            if upload_id is None:
                await _call(s3.put_object(Bucket=self.options.bucket, Key=name, Body=bytes(buffer)), "write")
            else:
                if buffer or not parts:
                    parts.append(await self._part(s3, name, upload_id, len(parts) + 1, bytes(buffer)))
                await _call(
                    s3.complete_multipart_upload(
                        Bucket=self.options.bucket, Key=name, UploadId=upload_id,
                        MultipartUpload={"Parts": parts},
                    ),
                    "write",
                )  # fmt: skip
        except BaseException:
            if upload_id is not None:
                await asyncio.shield(self._abort(s3, name, upload_id))
            raise
        return StoredObject(key, size, digest.hexdigest())

    async def _start(self, s3: S3Client, name: str) -> str:
        answer = await _call(s3.create_multipart_upload(Bucket=self.options.bucket, Key=name), "write")
        return str(answer["UploadId"])

    async def _part(
        self, s3: S3Client, name: str, upload_id: str, number: int, data: bytes
    ) -> dict[str, Any]:
        answer = await _call(
            s3.upload_part(
                Bucket=self.options.bucket, Key=name, UploadId=upload_id, PartNumber=number, Body=data
            ),
            "write",
        )
        return {"ETag": answer["ETag"], "PartNumber": number}

    async def _abort(self, s3: S3Client, name: str, upload_id: str) -> None:
        try:
            await s3.abort_multipart_upload(Bucket=self.options.bucket, Key=name, UploadId=upload_id)
        except (BotoCoreError, ClientError, OSError):
            # The service is gone: the incomplete upload is listed under .partial/ for the sweeper.
            return

    async def get(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        name = self._name(key)
        s3 = await self._s3()
        wanted = f"bytes={start}-{'' if end is None else end}"
        if start == 0 and end is None:
            answer = await _call(s3.get_object(Bucket=self.options.bucket, Key=name), "read", key)
        else:
            answer = await _call(
                s3.get_object(Bucket=self.options.bucket, Key=name, Range=wanted), "read", key
            )
        body = answer["Body"]
        try:
            while True:
                try:
                    chunk = await body.read(CHUNK_SIZE)
                except (TimeoutError, BotoCoreError, OSError) as e:
                    raise StorageUnavailable(f"cannot read the file storage (S3): {e}") from e
                if not chunk:
                    break
                yield chunk
        finally:
            body.close()

    async def stat(self, key: str) -> int | None:
        s3 = await self._s3()
        try:
            answer = await _call(s3.head_object(Bucket=self.options.bucket, Key=self._name(key)), "read", key)
        except ObjectMissing:
            return None
        return int(answer["ContentLength"])

    async def exists(self, key: str) -> bool:
        return await self.stat(key) is not None

    async def delete(self, key: str) -> None:
        s3 = await self._s3()
        check_key(key)
        if key.startswith(_PARTIAL):
            upload_id, _, real = key[len(_PARTIAL) :].partition("/")
            await _call(
                s3.abort_multipart_upload(
                    Bucket=self.options.bucket, Key=self._name(real), UploadId=_decode_id(upload_id)
                ),
                "write",
                missing_ok=True,
            )
            return
        await _call(s3.delete_object(Bucket=self.options.bucket, Key=self._name(key)), "write")

    async def delete_prefix(self, prefix: str) -> int:
        s3 = await self._s3()
        check_key(prefix, prefix=True)
        names = [self._prefix + info.key async for info in self._objects(s3, prefix)]
        for at in range(0, len(names), 1000):
            batch = [{"Key": n} for n in names[at : at + 1000]]
            answer = await _call(
                s3.delete_objects(Bucket=self.options.bucket, Delete={"Objects": batch, "Quiet": True}),
                "write",
            )
            if answer.get("Errors"):
                first = answer["Errors"][0]
                raise StorageUnavailable(
                    f"the file storage (S3) did not delete {first.get('Key')}: {first.get('Message')}"
                )
        return len(names)

    async def list(self, prefix: str = "") -> AsyncIterator[ObjectInfo]:
        s3 = await self._s3()
        check_key(prefix, prefix=True)
        async for info in self._objects(s3, prefix):
            yield info
        if _PARTIAL.startswith(prefix) or prefix.startswith(_PARTIAL):
            async for info in self._uploads(s3):
                if info.key.startswith(prefix):
                    yield info

    async def _objects(self, s3: S3Client, prefix: str) -> AsyncIterator[ObjectInfo]:
        paginator = s3.get_paginator("list_objects_v2")
        pages = paginator.paginate(Bucket=self.options.bucket, Prefix=self._prefix + prefix)
        try:
            async for page in pages:
                for item in page.get("Contents", []):
                    key = item["Key"][len(self._prefix) :]
                    yield ObjectInfo(key, item["Size"], item["LastModified"].timestamp())
        except (TimeoutError, BotoCoreError, ClientError, OSError) as e:
            raise _unavailable(e, "list") from e

    async def _uploads(self, s3: S3Client) -> AsyncIterator[ObjectInfo]:
        paginator = s3.get_paginator("list_multipart_uploads")
        try:
            async for page in paginator.paginate(Bucket=self.options.bucket, Prefix=self._prefix):
                for item in page.get("Uploads", []):
                    key = item["Key"][len(self._prefix) :]
                    started = item["Initiated"].timestamp()
                    yield ObjectInfo(f"{_PARTIAL}{_encode_id(item['UploadId'])}/{key}", 0, started)
        except (TimeoutError, BotoCoreError, ClientError, OSError) as e:
            raise _unavailable(e, "list") from e

    async def close(self) -> None:
        if self._stack is not None:
            stack, self._stack, self._client = self._stack, None, None
            with contextlib.suppress(Exception):
                await stack.aclose()


def _encode_id(upload_id: str) -> str:
    return base64.urlsafe_b64encode(upload_id.encode()).decode().rstrip("=")


def _decode_id(text: str) -> str:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()


async def _call(awaitable: Any, what: str, key: str | None = None, *, missing_ok: bool = False) -> Any:
    """Await one S3 call; its failures as the Storage errors (see the module docstring)."""
    try:
        return await awaitable
    except ClientError as e:
        code = str(e.response.get("Error", {}).get("Code", ""))
        if code in _MISSING or code == "NoSuchUpload":
            if missing_ok or code == "NoSuchUpload":
                return {}
            raise ObjectMissing(f"no stored file {key!r}") from e
        raise _unavailable(e, what) from e
    except (TimeoutError, BotoCoreError, OSError) as e:
        raise _unavailable(e, what) from e


def _unavailable(error: Exception, what: str) -> StorageUnavailable:
    return StorageUnavailable(f"cannot {what} the file storage (S3): {error}")
