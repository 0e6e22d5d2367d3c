"""Realtime and files: a subscriber to a collection with file fields receives each upload's
metadata in its delta (as REST returns it), and nothing of the storage's own: no local
path, no S3 endpoint, bucket or credential, no file token. Both backends."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from alyx_server.app import create_app
from tests.alyx_server.auth.support import bearer, register
from tests.alyx_server.realtime.support import LiveClient
from tests.alyx_server.storage.s3server import S3_ENVIRONMENT
from tests.alyx_server.storage.support import form, png, settings_for


async def test_a_subscriber_sees_an_uploads_metadata_and_no_secret(
    tmp_path: Path, aiohttp_client: Any, storage_overrides: dict[str, object]
) -> None:
    root = tmp_path / "project"
    settings = settings_for(root, **{**storage_overrides, "realtime.poll_interval": "20ms"})
    client = await aiohttp_client(create_app(settings))
    account = await register(client, "ada@example.com")
    auth = bearer(account.access)
    live = await LiveClient.connect(client, f"/api/realtime?token={account.access}")
    snapshot = await live.subscribe({"collection": "docs"})
    assert snapshot["type"] == "snapshot", snapshot
    sub = snapshot["payload"]["subscription_id"]

    image = png()
    data = form({"title": "t", "owner": account.id}, [("avatar", "me.png", image)])
    r = await client.post("/api/collections/docs", data=data, headers=auth)
    assert r.status == 201, await r.text()
    doc = await r.json()
    delta = await live.until("delta")
    (inserted,) = delta["payload"]["changes"]["inserts"]
    assert inserted["avatar"] == doc["avatar"]
    assert set(inserted["avatar"]) == {"name", "size", "type", "sha256", "key"}
    assert inserted["avatar"]["size"] == len(image) and inserted["avatar"]["type"] == "image/png"

    # Replacing the file: the delta carries the new metadata.
    r = await client.patch(
        f"/api/collections/docs/{doc['id']}",
        data=form({}, [("avatar", "b.png", png(color="blue"))]),
        headers=auth,
    )
    assert r.status == 200
    updated = (await live.until("delta"))["payload"]["changes"]["updates"][0]
    assert updated["avatar"]["name"] != doc["avatar"]["name"] and updated["avatar"]["name"].startswith("b_")
    assert live.views[sub].docs[doc["id"]]["avatar"] == updated["avatar"]

    frames = json.dumps(live.messages)
    secrets = [str(root), "data/storage", *S3_ENVIRONMENT.values(), "token"]
    secrets += [
        str(v) for k, v in storage_overrides.items() if k in ("storage.s3.endpoint", "storage.s3.bucket")
    ]
    leaked = [s for s in secrets if s not in ("true", "/dev/null") and s in frames]
    assert leaked == [], leaked
    await live.close()
