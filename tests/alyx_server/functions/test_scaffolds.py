"""The scaffolds' example functions run on the real SDKs (collection rules are not the point
here: OpenAccess; the function rules are the manifests' own)."""

from __future__ import annotations

import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from alyx_server.resources import data_dir
from alyx_server.rules import OpenAccess
from tests.alyx_server.functions.projects import make_app, sign_up

ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


def scaffold(name: str, target: Path) -> Path:
    source = data_dir("scaffolds") / name
    target.mkdir(parents=True)
    shutil.copy(source / "schema.yaml", target / "schema.yaml")
    shutil.copytree(source / "functions", target / "functions")
    return target


async def post(client: TestClient[Any, Any], path: str, body: Any, headers: dict[str, str]) -> Any:
    response = await client.post(path, json=body, headers=headers)
    assert response.status in (200, 201), await response.text()
    return await response.json()


async def test_todo_clear_completed(tmp_path: Path, aiohttp_client: ClientFactory) -> None:
    client = await aiohttp_client(make_app(scaffold("todo", tmp_path / "todo"), OpenAccess()))
    ada = await sign_up(client, "ada@example.com")
    todo_list = await post(
        client, "/api/collections/lists", {"owner_id": ada.id, "name": "home"}, ada.headers
    )
    for title, done in (("a", True), ("b", False), ("c", True)):
        todo = {"list_id": todo_list["id"], "owner_id": ada.id, "title": title, "done": done}
        await post(client, "/api/collections/todos", todo, ada.headers)
    body = await post(
        client, "/api/functions/clear_completed", {"input": {"list_id": todo_list["id"]}}, ada.headers
    )
    assert body["output"] == {"deleted": 2}
    assert body["logs"][0]["message"] == f"cleared 2 todos from list {todo_list['id']}"
    left = await (await client.get("/api/collections/todos", headers=ada.headers)).json()
    assert [t["title"] for t in left["docs"]] == ["b"]


async def test_blog_publish(tmp_path: Path, aiohttp_client: ClientFactory) -> None:
    client = await aiohttp_client(make_app(scaffold("blog", tmp_path / "blog"), OpenAccess()))
    ada = await sign_up(client, "ada@example.com")
    post_body = {"author_id": ada.id, "title": "Hello", "slug": "hello"}
    created = await post(client, "/api/collections/posts", post_body, ada.headers)
    body = await post(client, "/api/functions/publish", {"input": {"post_id": created["id"]}}, ada.headers)
    assert body["output"] == {"id": created["id"], "published": True}
    response = await client.post("/api/functions/publish", json={"input": {"post_id": created["id"]}})
    assert response.status == 403


async def test_basic_hello(tmp_path: Path, aiohttp_client: ClientFactory) -> None:
    client = await aiohttp_client(make_app(scaffold("basic", tmp_path / "basic"), OpenAccess()))
    ada = await sign_up(client, "ada@example.com")
    body = await post(client, "/api/functions/hello", {"input": {"name": "Ada"}}, ada.headers)
    assert body["output"] == {"message": "Hello, Ada!"}
