"""The S3 backend when its service goes away: a clear 503, no document pointing at a file
that was not written, and service again once the S3 server is back; and the settings."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from alyx_server.api.file_service import FILES
from alyx_server.app import create_app
from alyx_server.config import load_settings
from alyx_server.errors import ConfigError
from alyx_server.storage.s3 import PART_SIZE
from tests.alyx_server.auth.support import bearer, register
from tests.alyx_server.storage.s3server import MotoServer, make_bucket, s3_overrides
from tests.alyx_server.storage.support import form, settings_for


async def test_s3_stopped_mid_upload_is_503(
    tmp_path: Path, aiohttp_client: Any, s3_environment: None
) -> None:
    moto = MotoServer(tmp_path / "moto.log").start()
    try:
        bucket = make_bucket(moto.endpoint)
        overrides = {**s3_overrides(moto.endpoint, bucket), "storage.max_file_size": "64MiB"}
        client = await aiohttp_client(create_app(settings_for(tmp_path / "project", **overrides)))
        account = await register(client, "ada@example.com")
        auth = bearer(account.access)
        made = await client.post(
            "/api/collections/docs",
            data=form({"title": "kept", "owner": account.id}, [("attachments", "a.txt", b"before")]),
            headers=auth,
        )
        assert made.status == 201, await made.text()
        kept = await made.json()

        boundary = "Cut"
        body_size = 3 * PART_SIZE
        head = (f"POST /api/collections/docs HTTP/1.1\r\nHost: x\r\n{_auth(account.access)}"
                f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
                f"Content-Length: {body_size + 400}\r\n"
                f"Connection: close\r\n\r\n"
                f'--{boundary}\r\nContent-Disposition: form-data; name="owner"\r\n\r\n{account.id}\r\n'
                f'--{boundary}\r\nContent-Disposition: form-data; name="attachments"; '
                'filename="a.bin"\r\n\r\n'
                ).encode()  # fmt: skip
        reader, writer = await asyncio.open_connection(client.host, client.port)
        writer.write(head + b"\x04" * (PART_SIZE + 1_000_000))  # one part is on its way to S3
        await writer.drain()
        for _ in range(500):
            if [info async for info in client.app[FILES].storage.list(".partial/")]:
                break
            await asyncio.sleep(0.02)
        moto.kill()  # the S3 service goes away in the middle of the upload
        try:
            writer.write(b"\x04" * (PART_SIZE + 1_000_000))
            await writer.drain()
        except ConnectionError:
            pass
        answer = await asyncio.wait_for(reader.read(), 120)
        writer.close()
        status_line, _, rest = answer.partition(b"\r\n")
        assert b" 503 " in status_line, answer[:500]
        assert b"STORAGE_UNAVAILABLE" in rest and b"S3" in rest, rest[-500:]

        # No document points at the file that was not written, the earlier one is intact.
        listed = await (await client.get("/api/collections/docs", headers=auth)).json()
        assert [d["id"] for d in listed["docs"]] == [kept["id"]]
        # Downloads answer 503 while S3 is down, too.
        url = f"/api/files/docs/{kept['id']}/attachments/{kept['attachments'][0]['name']}"
        r = await client.get(url, headers=auth)
        assert r.status == 503 and (await r.json())["code"] == "STORAGE_UNAVAILABLE"

        # Back on the same port (moto keeps nothing): uploads work again, same client.
        moto.start()
        make_bucket(moto.endpoint, bucket)
        again = await client.post(
            "/api/collections/docs",
            data=form({"title": "after", "owner": account.id}, [("attachments", "b.txt", b"after")]),
            headers=auth,
        )
        assert again.status == 201, await again.text()
        doc = await again.json()
        r = await client.get(
            f"/api/files/docs/{doc['id']}/attachments/{doc['attachments'][0]['name']}", headers=auth
        )
        assert r.status == 200 and await r.read() == b"after"
    finally:
        moto.kill()


def _auth(token: str) -> str:
    return f"Authorization: Bearer {token}\r\n"


@pytest.mark.parametrize(
    ("yaml", "expected"),
    [
        ("storage:\n  backend: s3\n", "storage.backend is s3 but storage.s3.bucket is not set"),
        ("storage:\n  backend: s3\n  s3:\n    bucket: My_Bucket\n", "is not an S3 bucket name"),
        ("storage:\n  s3:\n    endpoint: s3.example.com\n", "is not an S3 endpoint URL"),
        ("storage:\n  s3:\n    prefix: a/../b\n", "is not a folder inside the bucket"),
        ("storage:\n  backend: gcs\n", "storage.backend"),
    ],
)
def test_s3_settings_are_checked(tmp_path: Path, yaml: str, expected: str) -> None:
    (tmp_path / "alyx.yaml").write_text(yaml, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path, environ={})
    message = str(caught.value)
    assert expected in message and "alyx.yaml:" in message, message


def test_s3_settings_from_yaml_and_environment(tmp_path: Path) -> None:
    (tmp_path / "alyx.yaml").write_text(
        "storage:\n  backend: s3\n  s3:\n    endpoint: http://127.0.0.1:9000\n    path_style: true\n",
        encoding="utf-8",
    )
    settings = load_settings(tmp_path, environ={"ALYX_STORAGE_S3_BUCKET": "app-files"})
    s3 = settings.storage.s3
    assert (settings.storage.backend, s3.bucket, s3.endpoint, s3.path_style) == (
        "s3", "app-files", "http://127.0.0.1:9000", True,
    )  # fmt: skip
