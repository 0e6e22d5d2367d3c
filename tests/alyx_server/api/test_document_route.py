"""The served dispatch resolves a document's path (`/api/collections/A/B`) against the
document's resource alone (api/pipeline._document_resource): the answer is the router's
for every path of that shape, and a route that could match such a path first turns the
shortcut off."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from alyx_server.api.pipeline import _document_resource

PATHS = [
    "/api/collections/posts/0b7c1f1e-3f4c-4c55-9b43-1d2f0e6a9c01",
    "/api/collections/posts/a%20b",
    "/api/collections/posts/a%2Fb",
    "/api/collections/_alyx_users/x",
    "/api/collections/posts/",
    "/api/collections//x",
    "/api/collections/posts/x/y",
    "/api/collections/posts/{x}",
]


def _answer(match_info: web.UrlMappingMatchInfo) -> tuple[object, ...]:
    exception = match_info.http_exception
    if exception is not None:
        return ("error", exception.status, exception.headers.get("Allow"))
    return ("route", match_info.route, dict(match_info))


async def _resolved(app: web.Application, method: str, path: str) -> tuple[object, ...]:
    """What the served dispatch resolves `method path` to."""
    request = make_mocked_request(method, path, app=app)
    document = _document_resource(app.router)
    assert document is not None
    found, _ = await document.resolve(request)
    return _answer(found if found is not None else await app.router.resolve(request))


async def test_document_paths_resolve_as_the_router_resolves_them(app: web.Application) -> None:
    app.router.freeze()
    document = _document_resource(app.router)
    assert document is not None and document.canonical == "/api/collections/{collection}/{id}"
    for method in ("GET", "PATCH", "DELETE", "PUT", "POST"):
        for path in PATHS:
            expected = _answer(await app.router.resolve(make_mocked_request(method, path, app=app)))
            assert await _resolved(app, method, path) == expected, (method, path)


async def _noop(request: web.Request) -> web.Response:
    return web.Response()


def _router(*paths: str) -> web.UrlDispatcher:
    app = web.Application()
    for path in paths:
        app.router.add_get(path, _noop)
    return app.router


@pytest.mark.parametrize(
    "paths",
    [
        # Indexed under a longer prefix: tried before the document's resource.
        ("/api/collections/{collection}/{id}", "/api/collections/special/{id}"),
        ("/api/collections/{collection}/{id}", "/api/collections/posts/fixed"),
        # Tried before it under the same prefix, and able to match two segments.
        ("/api/collections/{tail:.*}", "/api/collections/{collection}/{id}"),
        ("/api/collections/{a}/{b}", "/api/collections/{collection}/{id}"),
        # No document resource at all.
        ("/api/collections/{collection}",),
    ],
)
def test_a_route_that_can_match_first_turns_the_shortcut_off(paths: tuple[str, ...]) -> None:
    assert _document_resource(_router(*paths)) is None


def test_the_collection_resource_before_it_keeps_the_shortcut() -> None:
    router = _router("/api/collections/{collection}", "/api/collections/{collection}/{id}", "/api/{x}")
    found = _document_resource(router)
    assert found is not None and found.canonical == "/api/collections/{collection}/{id}"
