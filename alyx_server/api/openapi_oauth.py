"""OpenAPI paths of the OAuth2 / OpenID Connect sign-in routes (api/oauth.py), merged by
`openapi_accounts.account_paths`. /start and /callback answer with redirects for a
browser; the app gets its session from POST /api/auth/oauth/exchange."""

from __future__ import annotations

from typing import Any

__all__ = ["oauth_paths"]

_ERROR = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
_BEARER: list[dict[str, list[str]]] = [{"bearer": []}]
_OPTIONAL: list[dict[str, list[str]]] = [{}, {"bearer": []}]
_PROVIDER = {"name": "provider", "in": "path", "required": True, "schema": {"type": "string"}}
_IDENTITIES = {
    "type": "object",
    "properties": {
        "identities": {"type": "array", "items": {"type": "object"}},
        "password": {"type": "boolean"},
    },
    "required": ["identities", "password"],
}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(s): {"description": "Error", **_ERROR} for s in sorted({*statuses, 401, 403})}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _op(
    op_id: str, ok: dict[str, Any], *fail: int, security: Any = _OPTIONAL, **extra: Any
) -> dict[str, Any]:
    return {
        "operationId": op_id,
        "tags": ["auth"],
        "security": security,
        **extra,
        "responses": {**ok, **_errors(*fail)},
    }


def oauth_paths() -> dict[str, Any]:
    redirect = {"302": {"description": "To the provider, or back to the app"}}
    callback = _op("auth_oauth_callback", redirect, 400, 404, parameters=[_PROVIDER])
    return {
        "/api/auth/providers": {
            "get": _op(
                "auth_providers",
                {
                    "200": {
                        "description": "The providers",
                        **_json(
                            {
                                "type": "object",
                                "properties": {"providers": {"type": "array", "items": {"type": "object"}}},
                                "required": ["providers"],
                            }
                        ),
                    }
                },
            )
        },
        "/api/auth/oauth/{provider}/start": {
            "get": _op(
                "auth_oauth_start",
                redirect,
                400,
                404,
                502,  # OAUTH_PROVIDER_ERROR: the provider's discovery document cannot be read
                parameters=[
                    _PROVIDER,
                    {
                        "name": "redirect",
                        "in": "query",
                        "required": True,
                        "schema": {"type": "string"},
                        "description": "An app URL listed in auth.oauth.allowed_redirects",
                    },
                    {
                        "name": "link",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string"},
                        "description": "A link ticket from POST /api/auth/identities",
                    },
                    {
                        "name": "code_challenge",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{43}$"},
                        "description": "S256 of a verifier the app keeps; the exchange then needs it",
                    },
                ],
            )
        },
        "/api/auth/oauth/{provider}/callback": {
            "get": callback,
            "post": {**callback, "operationId": "auth_oauth_callback_post"},
        },
        "/api/auth/oauth/exchange": {
            "post": _op(
                "auth_oauth_exchange",
                {"200": {"description": "Signed in", **_json({"$ref": "#/components/schemas/Session"})}},
                400,
                413,
                503,
                requestBody={
                    "required": True,
                    **_json(
                        {
                            "type": "object",
                            "properties": {"code": {"type": "string"}, "code_verifier": {"type": "string"}},
                            "required": ["code"],
                        }
                    ),
                },
            )
        },
        "/api/auth/identities": {
            "get": _op(
                "auth_identities",
                {"200": {"description": "Identities", **_json(_IDENTITIES)}},
                503,
                security=_BEARER,
            ),
            "post": _op(
                "auth_link_identity",
                {
                    "200": {
                        "description": "A one-time link URL",
                        **_json(
                            {"type": "object", "properties": {"url": {"type": "string"}}, "required": ["url"]}
                        ),
                    }
                },
                400,
                404,
                413,
                503,
                security=_BEARER,
                requestBody={
                    "required": True,
                    **_json(
                        {
                            "type": "object",
                            "properties": {"provider": {"type": "string"}, "redirect": {"type": "string"}},
                            "required": ["provider", "redirect"],
                        }
                    ),
                },
            ),
        },
        "/api/auth/identities/{id}": {
            "delete": _op(
                "auth_unlink_identity",
                {"204": {"description": "Unlinked"}},
                404,
                409,
                503,
                security=_BEARER,
                parameters=[{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
            )
        },
        "/api/admin/users/{id}/identities": {
            "get": _op(
                "admin_user_identities",
                {"200": {"description": "Identities", **_json(_IDENTITIES)}},
                404,
                503,
                security=_BEARER,
                parameters=[{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
            )
        },
        "/api/admin/users/{id}/identities/{identity}": {
            "delete": _op(
                "admin_unlink_identity",
                {"204": {"description": "Unlinked"}},
                404,
                409,
                503,
                security=_BEARER,
                parameters=[
                    {"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
                    for n in ("id", "identity")
                ],
            )
        },
    }
