"""OpenAPI pieces of file fields (docs/files.md), merged by `openapi.openapi_document`.

- `FileMetadata`: what a document holds per file (storage/files.py `metadata`); a single
  file field is one object or null, a multiple one a list of at most `maxFiles`.
- In JSON create and update bodies a file field takes only `null` (clients never write
  metadata); a JSON update may name files to remove as `<field>-` (described in words).
- Create and update also accept `multipart/form-data` (api/uploads.py): each field a part
  (text converted to the field's type), each file a binary part under its field's name,
  Only collections with a file field list the multipart body. Described in words, not
  schemas: `<field>+` (append) and `<field>-` (remove by name), whose acceptance depends
  on the files already stored, and the `@json` part (a text part that must parse as a
  JSON object of fields).
- `GET /api/files/{collection}/{id}/{field}/{filename}` (one path per collection with file
  fields, `field` one of its file fields) and `POST /api/files/token` (api/files.py).
"""

from __future__ import annotations

from typing import Any

from alyx_server.api.openapi_accounts import OPTIONAL, errors, json_body, ref
from alyx_server.schema.model import Collection, Field, FieldType

__all__ = [
    "FILE_ERROR_CODES",
    "file_components",
    "file_fields",
    "file_paths",
    "file_value_schema",
    "multipart_body",
]

FILE_ERROR_CODES = ["FILE_NOT_FOUND", "INVALID_MULTIPART", "INVALID_THUMB", "IMAGE_TOO_LARGE"]

_BINARY = {"type": "string", "contentMediaType": "application/octet-stream"}


def file_fields(c: Collection) -> list[Field]:
    """The collection's public file fields, in schema order."""
    return [f for f in c.fields if f.type is FieldType.FILE and not f.internal]


def file_value_schema(f: Field) -> dict[str, Any]:
    """A file field's value in a stored document."""
    assert f.file is not None
    if f.file.multiple:
        many: dict[str, Any] = {
            "type": ["array", "null"] if f.nullable else "array",
            "items": ref("FileMetadata"),
            "minItems": 1,
            "maxItems": f.file.max_files,
        }
        return many
    if f.nullable:
        return {"oneOf": [ref("FileMetadata"), {"type": "null"}]}
    return ref("FileMetadata")


_FORM = "Text parts are fields (converted to the field's type), file parts are files"
# Whether a removal or an append is accepted depends on the files already stored (a name
# that is not there, or more than maxFiles in all, is refused): no schema can state it, so
# `<field>-` and `<field>+` are described, not listed.
_REMOVE = (
    _FORM + "; on a multiple file field, `<field>+` file parts append to its files and text parts "
    "`<field>-` (repeatable) remove the file of that name"
)


def multipart_body(c: Collection, fields: dict[str, dict[str, Any]], *, update: bool) -> dict[str, Any]:
    """The multipart/form-data schema of create (or update) of `c`; `fields` is the JSON
    body's properties (text parts take the same values)."""
    files = file_fields(c)
    names = {f.name for f in files}
    # Text parts take the JSON values, as text the server converts to the field's type.
    properties = {n: s for n, s in fields.items() if n not in names and not n.endswith("-")}
    for f in files:
        assert f.file is not None
        if f.file.multiple:
            properties[f.name] = {"type": "array", "items": _BINARY, "maxItems": f.file.max_files}
        else:
            properties[f.name] = _BINARY
    # The `@json` part (a JSON object of fields) is left out: JSON Schema cannot say that a
    # text part must parse as a JSON object. docs/files.md describes it.
    out: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
        "description": _REMOVE if update and any(f.file and f.file.multiple for f in files) else _FORM,
    }
    return out


def multipart_content(c: Collection, schema_name: str) -> dict[str, Any]:
    """The `multipart/form-data` media type of a request body: files as binary parts."""
    encoding = {f.name: {"contentType": "application/octet-stream"} for f in file_fields(c)}
    return {"multipart/form-data": {"schema": ref(schema_name), "encoding": encoding}}


def file_components() -> dict[str, Any]:
    return {
        "FileMetadata": {
            "type": "object",
            "description": "One stored file (docs/files.md); `name` is what the download URL names",
            "properties": {
                "name": {"type": "string", "minLength": 1},
                "size": {"type": "integer", "minimum": 0},
                "type": {"type": "string", "description": "The content type, sniffed from the bytes"},
                "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                "key": {"type": "string", "description": "Where the bytes live in the storage backend"},
            },
            "required": ["name", "size", "type", "sha256", "key"],
            "additionalProperties": False,
        },
        "FileTokenRequest": {
            "type": "object",
            "properties": {
                "collection": {"type": "string", "minLength": 1},
                "id": {"type": ["string", "integer"], "minLength": 1},
                "field": {"type": "string", "minLength": 1},
                "name": {"type": "string", "minLength": 1},
            },
            "required": ["collection", "id", "field", "name"],
        },
        "FileToken": {
            "type": "object",
            "properties": {
                "token": {"type": "string"},
                "expires_at": {"type": "string", "format": "date-time"},
            },
            "required": ["token", "expires_at"],
            "additionalProperties": False,
        },
    }


def _download(c: Collection, id_schema: dict[str, Any]) -> dict[str, Any]:
    fields = file_fields(c)
    thumbs = sorted({t for f in fields for t in (f.file.thumbs if f.file else ())})
    thumb: dict[str, Any] = {"type": "string", "enum": thumbs} if thumbs else {"not": {}}
    binary = {"schema": _BINARY}
    return {
        "parameters": [
            {"name": "id", "in": "path", "required": True, "schema": id_schema},
            {"name": "field", "in": "path", "required": True,
             "schema": {"type": "string", "enum": [f.name for f in fields]}},
            {"name": "filename", "in": "path", "required": True,
             "schema": {"type": "string", "minLength": 1}},
        ],
        "get": {
            "operationId": f"download_{c.name}_file", "tags": ["files"], "security": OPTIONAL,
            "description": "Under the collection's read rule; a protected field's files need ?token= from "
                           "POST /api/files/token. Range, If-None-Match and If-Range are honoured.",
            "parameters": [
                {"name": "thumb", "in": "query", "schema": thumb,
                 "description": "A thumbnail in one of the field's `thumbs` sizes (images only)"},
                {"name": "token", "in": "query", "schema": {"type": "string"},
                 "description": "A file token (POST /api/files/token), for protected fields"},
            ],
            "responses": {
                "200": {"description": "The file", "content": {"*/*": binary}},
                "206": {"description": "A byte range of the file", "content": {"*/*": binary}},
                "304": {"description": "Not modified (If-None-Match)"},
                "416": {"description": "Range not satisfiable"},
                **errors(400, 404, 503),
            },
        },
    }  # fmt: skip


def file_paths(collections: list[tuple[Collection, dict[str, Any]]]) -> dict[str, Any]:
    """The download path of each (collection, id schema) with file fields, and the token route."""
    paths: dict[str, Any] = {}
    for c, id_schema in collections:
        if file_fields(c):
            paths[f"/api/files/{c.name}/{{id}}/{{field}}/{{filename}}"] = _download(c, id_schema)
    paths["/api/files/token"] = {"post": {
        "operationId": "file_token", "tags": ["files"], "security": OPTIONAL,
        "description": "A short-lived token for one file, issued under the collection's read rule",
        "requestBody": {"required": True, **json_body(ref("FileTokenRequest"))},
        "responses": {"200": {"description": "The token", **json_body(ref("FileToken"))},
                      **errors(400, 404, 413, 503)},
    }}  # fmt: skip
    return paths
