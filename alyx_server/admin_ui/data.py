"""The data browser: every collection as a table, each document as a page and a form.

    GET  <base>/data                          the collections
    GET  <base>/data/{c}                      a page of documents: where, filter, sort
                                              (the REST syntax), col (the columns shown,
                                              repeatable), limit, after/before (keyset
                                              cursors, browse.py); fragment=1 answers the
                                              table alone (data.js refreshes it on changes)
    GET  <base>/data/{c}/new                  the create form
    POST <base>/data/{c}/new                  create; errors shown next to their fields
    POST <base>/data/{c}/delete               delete the checked documents (`id`, repeated),
                                              all in one transaction
    GET  <base>/data/{c}/doc/{id}             one document; references link to their docs
    GET  <base>/data/{c}/doc/{id}/edit        the edit form
    POST <base>/data/{c}/doc/{id}/edit        update the fields that changed
    POST <base>/data/{c}/doc/{id}/delete      delete it
    GET  <base>/data/{c}/doc/{id}/file/{field}/{name}
                                              one file of a file field (`thumb=WxH` for
                                              a thumbnail), the protected ones included

Reads and writes are those of the REST routes (`api/listing.py` parses the query,
`api/operations.py` prepares each write, the group-committing writer runs it) with the
admin as the caller, so validation, rules (which admins bypass), constraints, triggers
and the change feed are the same. Like the REST API for admins, the browser neither shows
nor writes `internal` fields; fields the server sets (`default: now`, `onUpdate: now`)
are shown, not edited.

File fields show as links to their files (with a thumbnail for images when the field has
thumbnail sizes). Forms that have file fields are sent as multipart/form-data: a file
input per field (`<field>` replaces, `<field>+` appends to a multiple field) and a remove
checkbox per stored file (`<field>-`); the files are stored through api/uploads.py
(`store_file`: maxSize, mimeTypes, sniffing), deleted again if the write fails, and the
files a committed write replaced are deleted after it. The whole form is bound by
`server.max_body_size`; larger files go through the REST API, which streams them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode

import orjson
from aiohttp import web
from multidict import MultiDict, MultiMapping

from alyx_server.admin_ui.browse import (
    Keys,
    cursor_of,
    form_text,
    form_value,
    order_keys,
    page_query,
    parse_cursor,
)
from alyx_server.admin_ui.site import SITE, Admin, Site
from alyx_server.api.collections import access_for
from alyx_server.api.file_service import FILES
from alyx_server.api.files import serve_file
from alyx_server.api.listing import parse_list
from alyx_server.api.operations import (
    all_or_nothing,
    prepare_create,
    prepare_delete,
    prepare_update,
    public,
    stored_doc,
)
from alyx_server.api.runtime import RUNTIME, CollectionView
from alyx_server.api.uploads import Upload, discard, file_limit, release, store_file
from alyx_server.db import list_docs
from alyx_server.errors import AlyxError, Conflict, FieldIssue, InvalidQuery, ValidationError
from alyx_server.rules.access import where_predicate
from alyx_server.schema.model import Field, FieldType
from alyx_server.storage.files import FileEdit, file_entries
from alyx_server.storage.thumbs import THUMB_SOURCE_TYPES
from alyx_server.tools.timestamps import Clock

__all__ = ["add_routes"]

DEFAULT_PAGE = 50
MAX_PAGE = 500
MAX_BULK = 500
PERMISSION = "*"
"""Admin tokens need every permission (`*`) to browse and change data; admin users may."""


def _view(request: web.Request) -> CollectionView:
    return request.app[RUNTIME].catalog.get(request.match_info["collection"])


def _doc_url(site: Site, collection: str, doc_id: Any, tail: str = "") -> str:
    return site.url(f"data/{quote(collection, safe='')}/doc/{quote(str(doc_id), safe='')}{tail}")


def _reference_url(site: Site, request: web.Request, f: Field, value: Any) -> str | None:
    """Where a reference value leads: the referenced doc, or the list filtered on it."""
    ref = f.references
    if ref is None or value is None:
        return None
    target = request.app[RUNTIME].catalog.find(ref.collection)
    if target is None:
        return None
    if target.codec.pk.name == ref.field:
        return _doc_url(site, ref.collection, value)
    filter_text = f"{ref.field}:eq:{value}"
    return site.url(f"data/{quote(ref.collection, safe='')}", filter=filter_text)


def _file_links(site: Site, view: CollectionView, doc: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Each file field's files: name, size, type, the download URL and, for an image of a
    field with thumbnail sizes, the URL of its first size."""
    out: dict[str, list[dict[str, Any]]] = {}
    doc_id = doc.get(view.codec.pk.name)
    for f in view.collection.fields:
        if f.type is not FieldType.FILE or f.internal or f.file is None or f.name not in doc:
            continue
        entries = []
        for entry in file_entries(doc.get(f.name)):
            name = str(entry.get("name", ""))
            url = _doc_url(site, view.name, doc_id, f"/file/{quote(f.name, safe='')}/{quote(name, safe='')}")
            thumbs = f.file.thumbs
            image = entry.get("type") in THUMB_SOURCE_TYPES and bool(thumbs)
            entries.append({
                "name": name, "size": entry.get("size"), "type": entry.get("type"), "url": url,
                "thumb_url": f"{url}?{urlencode({'thumb': thumbs[0]})}" if image else None,
            })  # fmt: skip
        out[f.name] = entries
    return out


# -- the collections ------------------------------------------------------------------------
async def index(request: web.Request, admin: Admin) -> web.StreamResponse:
    site = request.app[SITE]
    catalog = request.app[RUNTIME].catalog
    collections = [
        {
            "name": c.name,
            "url": site.url(f"data/{c.name}"),
            "fields": len(catalog.get(c.name).public_names),
            "references": sorted({f.references.collection for f in c.fields if f.references}),
        }
        for c in sorted(catalog.schema.collections, key=lambda c: c.name)
    ]
    return site.render(request, "data_index.html", {"collections": collections}, admin=admin)


# -- a page of documents --------------------------------------------------------------------
def _limit(raw: str | None) -> int:
    if raw is None or raw == "":
        return DEFAULT_PAGE
    text = raw.strip()
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_PAGE:
        raise InvalidQuery(f"invalid limit {raw!r}: expected an integer from 1 to {MAX_PAGE}")
    return int(text)


def _columns(view: CollectionView, query: MultiMapping[str]) -> list[str]:
    """The columns asked for (`col`, repeatable), in schema order; every public field
    when none is (a name the collection no longer has is left out)."""
    wanted: set[str] = set()
    for raw in query.getall("col", ()):
        wanted.update(n.strip() for n in str(raw).split(","))
    names = [n for n in view.codec.public_names if n in wanted]
    return names or list(view.codec.public_names)


async def table(request: web.Request, admin: Admin) -> web.StreamResponse:
    site = request.app[SITE]
    rt = request.app[RUNTIME]
    view = _view(request)
    q = request.query
    state = {k: q.get(k, "") for k in ("where", "sort", "limit")}
    filters = [f for f in q.getall("filter", ()) if f]
    columns = _columns(view, q)
    keys: Keys = order_keys(view.collection, ())
    docs: list[dict[str, Any]] = []
    error: str | None = None
    prev_cursor = next_cursor = None
    limit = DEFAULT_PAGE
    try:
        limit = _limit(q.get("limit"))
        rest = MultiDict[str]([("filter", f) for f in filters])
        if state["where"].strip():
            rest.add("where", state["where"])
        if state["sort"].strip():
            rest.add("sort", state["sort"])
        access = access_for(rt, request)
        policy, auth, info = access
        base, _shape = parse_list(
            view,
            rest,
            policy.read_predicate(view.collection, auth, info),
            lambda text: where_predicate(view.collection, text, auth, info),
        )
        keys = order_keys(view.collection, base.sort)
        after = q.get("after")
        before = q.get("before") if not after else None
        after_values = parse_cursor(view.codec, keys, after, "after") if after else None
        before_values = parse_cursor(view.codec, keys, before, "before") if before else None
        page = page_query(base, keys, limit, after_values, before_values)

        def read(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            return list_docs(conn, page.query).docs

        found = await rt.ready_db().read_small(read)
        more = len(found) > limit
        docs = found[:limit]
        if page.backwards:
            docs.reverse()
            if docs:
                next_cursor = cursor_of(keys, docs[-1])
                prev_cursor = cursor_of(keys, docs[0]) if more else None
        else:
            if docs:
                next_cursor = cursor_of(keys, docs[-1]) if more else None
                prev_cursor = cursor_of(keys, docs[0]) if after else None
    except InvalidQuery as e:
        error = e.message
    here = {**{k: v for k, v in state.items() if v}}
    listing_url = site.url(f"data/{view.name}")

    def link(**cursor: str) -> str:
        pairs: list[tuple[str, str]] = [("filter", f) for f in filters]
        pairs += list(here.items())
        pairs += [("col", c) for c in q.getall("col", ()) if c]
        pairs += list(cursor.items())
        return listing_url + ("?" + urlencode(pairs) if pairs else "")

    context = {
        "view": view,
        "fields": {f.name: f for f in view.collection.fields},
        "pk": view.codec.pk.name,
        "columns": columns,
        "all_columns": list(view.codec.public_names),
        "docs": docs,
        "rows": [_row(site, request, view, doc) for doc in docs],
        "state": state,
        "filters": filters,
        "limit": limit,
        "error": error,
        "first_url": link() if (q.get("after") or q.get("before")) else None,
        "prev_url": link(before=prev_cursor) if prev_cursor else None,
        "next_url": link(after=next_cursor) if next_cursor else None,
        "self_url": request.path_qs,
        "listing_url": listing_url,
        "new_url": site.url(f"data/{view.name}/new"),
        "bulk_url": site.url(f"data/{view.name}/delete"),
        "deleted": q.get("deleted"),
        "order": ", ".join(f"{f.name} {'desc' if d else 'asc'}" for f, d in keys),
    }
    template = "data_rows.html" if q.get("fragment") == "1" else "data_table.html"
    return site.render(request, template, context, admin=admin)


def _row(site: Site, request: web.Request, view: CollectionView, doc: dict[str, Any]) -> dict[str, Any]:
    pk = view.codec.pk.name
    links = {}
    for name, f in view.references.items():
        del f
        field = view.collection.field(name)
        if field is not None:
            links[name] = _reference_url(site, request, field, doc.get(name))
    files = _file_links(site, view, doc)
    return {
        "id": doc[pk],
        "url": _doc_url(site, view.name, doc[pk]),
        "doc": doc,
        "links": links,
        "files": files,
    }


# -- one document ---------------------------------------------------------------------------
async def show(request: web.Request, admin: Admin) -> web.StreamResponse:
    site = request.app[SITE]
    rt = request.app[RUNTIME]
    view = _view(request)
    access = access_for(rt, request)
    doc_id = request.match_info["id"]
    doc = rt.ready_db().read_now(lambda conn: public(view, stored_doc(conn, view, doc_id, access)))
    fields = [view.codec.fields[n].field for n in view.codec.public_names]
    links = {f.name: _reference_url(site, request, f, doc.get(f.name)) for f in fields if f.references}
    context = {
        "view": view,
        "doc": doc,
        "fields": fields,
        "links": links,
        "files": _file_links(site, view, doc),
        "doc_id": doc[view.codec.pk.name],
        "edit_url": _doc_url(site, view.name, doc_id, "/edit"),
        "delete_url": _doc_url(site, view.name, doc_id, "/delete"),
        "listing_url": site.url(f"data/{view.name}"),
        "saved": request.query.get("saved"),
    }
    return site.render(request, "data_doc.html", context, admin=admin)


# -- create and edit ------------------------------------------------------------------------
def _form_fields(view: CollectionView, creating: bool) -> list[Field]:
    """The fields a form edits: public ones the client may write (and the primary key
    only on create)."""
    out = []
    for name in view.codec.public_names:
        f = view.codec.fields[name].field
        if name in view.codec.server_managed:
            continue
        if f.primary and not creating:
            continue
        out.append(f)
    return out


def _hint(f: Field, creating: bool) -> str:
    parts = [f.type.value]
    if f.file is not None:
        parts.append(f"up to {f.file.max_files} files" if f.file.multiple else "one file")
        if f.file.mime_types:
            parts.append(", ".join(f.file.mime_types))
    if f.type is FieldType.JSON:
        parts.append("JSON text")
    if f.type is FieldType.BLOB:
        parts.append("base64")
    if f.type is FieldType.TIMESTAMP:
        parts.append("RFC 3339, e.g. 2026-01-31T12:00:00.000Z")
    if f.references is not None:
        parts.append(f"id in {f.references.collection}")
    if f.nullable:
        parts.append("empty: null" if not creating else "optional")
    elif f.default is not None:
        parts.append("empty: " + ("generated" if f.default.kind == "auto" else "default") if creating else "")
    elif creating:
        parts.append("required")
    return " · ".join(p for p in parts if p)


def _render_form(
    request: web.Request,
    admin: Admin,
    view: CollectionView,
    *,
    creating: bool,
    values: Mapping[str, str],
    issues: Mapping[str, str],
    message: str | None,
    doc_id: Any = None,
    files: Mapping[str, list[dict[str, Any]]] | None = None,
) -> web.StreamResponse:
    site = request.app[SITE]
    fields = _form_fields(view, creating)
    controls = [
        {
            "field": f,
            "value": values.get(f.name, ""),
            "error": issues.get(f.name),
            "hint": _hint(f, creating),
            "options": None if f.validation.enum is None else [form_text(f, o) for o in f.validation.enum],
            "widget": _widget(f),
            "files": (files or {}).get(f.name, []),
        }
        for f in fields
    ]
    # Issues about fields that have no input here (server-set, internal...) go on top.
    shown = {f.name for f in fields}
    others = [m for n, m in issues.items() if n not in shown]
    if message is None and others:
        message = "; ".join(others)
    action = site.url(f"data/{view.name}/new") if creating else _doc_url(site, view.name, doc_id, "/edit")
    context = {
        "view": view,
        "creating": creating,
        "controls": controls,
        "message": message,
        "action": action,
        "doc_id": doc_id,
        "multipart": any(f.type is FieldType.FILE for f in fields),
        "cancel_url": site.url(f"data/{view.name}") if creating else _doc_url(site, view.name, doc_id),
    }
    return site.render(request, "data_form.html", context, admin=admin)


def _widget(f: Field) -> str:
    if f.type is FieldType.FILE:
        return "file"
    if f.validation.enum is not None or f.type is FieldType.BOOL:
        return "select"
    if f.type in (FieldType.TEXT, FieldType.JSON, FieldType.BLOB):
        return "textarea"
    return "input"


async def new_form(request: web.Request, admin: Admin) -> web.StreamResponse:
    view = _view(request)
    return _render_form(request, admin, view, creating=True, values={}, issues={}, message=None)


def _issues(error: AlyxError) -> dict[str, str]:
    out: dict[str, str] = {}
    if isinstance(error, ValidationError | Conflict) and error.details:
        for item in error.details:
            name = str(item.get("field", ""))
            if name and name not in out:
                out[name] = str(item.get("message", error.message))
    return out


def _read_form(
    view: CollectionView, form: Mapping[str, Any], *, creating: bool, stored: Mapping[str, Any] | None
) -> tuple[dict[str, Any], dict[str, str], list[FieldIssue]]:
    """(the JSON body, the submitted texts, issues found before the codec)."""
    body: dict[str, Any] = {}
    texts: dict[str, str] = {}
    issues: list[FieldIssue] = []
    for f in _form_fields(view, creating):
        if f.type is FieldType.FILE:
            continue  # _read_files
        raw = form.get(f.name)
        text = raw if isinstance(raw, str) else ""
        text = text.replace("\r\n", "\n")
        texts[f.name] = text
        send, value, issue = form_value(f, text, creating=creating)
        if issue is not None:
            issues.append(issue)
            continue
        if not send:
            continue
        if stored is not None and f.name in stored and stored[f.name] == value:
            continue  # unchanged: left out, so the change feed names only what changed
        body[f.name] = value
    return body, texts, issues


def _with_codec_issues(
    view: CollectionView, early: list[FieldIssue], body: dict[str, Any], *, creating: bool, clock: Clock
) -> dict[str, str]:
    """The issues found reading the form, and those the codec finds in the rest of it (so
    every field's problem shows at once)."""
    issues = {i.field: i.message for i in early}
    try:
        data = view.codec.with_defaults(body, clock) if creating else body
        view.codec.encode(data, partial=not creating)
    except ValidationError as e:
        for name, message in _issues(e).items():
            issues.setdefault(name, message)
    return issues


async def _read_files(
    request: web.Request, view: CollectionView, form: MultiMapping[Any], upload: Upload
) -> None:
    """Store the files of the form's file inputs and note the removals it asks for."""
    storage = request.app[FILES].storage
    limit = file_limit(request)
    for f in view.collection.fields:
        if f.type is not FieldType.FILE or f.internal:
            continue
        for raw_name in (f.name, f.name + "+"):
            for item in form.getall(raw_name, ()):
                if isinstance(item, web.FileField) and item.filename:
                    stream = item.file
                    stream.seek(0)

                    async def read(n: int, stream: Any = stream) -> bytes:
                        data: bytes = stream.read(n)
                        return data

                    await store_file(view, storage, upload, raw_name, item.filename, read, limit)
        removed = [v for v in form.getall(f.name + "-", ()) if isinstance(v, str) and v]
        if removed:
            upload.edits.setdefault(f.name, FileEdit()).remove.extend(removed)


async def create(request: web.Request, admin: Admin) -> web.StreamResponse:
    site = request.app[SITE]
    rt = request.app[RUNTIME]
    view = _view(request)
    form = await request.post()
    body, texts, early = _read_form(view, form, creating=True, stored=None)
    if early:
        issues = _with_codec_issues(view, early, body, creating=True, clock=rt.clock)
        return _render_form(
            request, admin, view, creating=True, values=texts, issues=issues,
            message="fix the fields marked below",
        )  # fmt: skip
    upload = Upload(body)
    try:
        await _read_files(request, view, form, upload)
        step = prepare_create(view, body, access_for(rt, request, body), rt.clock, upload.edits)
        _status, doc = await rt.ready_db().write(step)
    except AlyxError as e:
        await discard(request, upload)
        issues = _issues(e)
        return _render_form(
            request, admin, view, creating=True, values=texts, issues=issues,
            message=None if issues else e.message,
        )  # fmt: skip
    except BaseException:
        await discard(request, upload)
        raise
    raise web.HTTPSeeOther(_doc_url(site, view.name, doc[view.codec.pk.name]) + "?saved=created")


async def edit_form(request: web.Request, admin: Admin) -> web.StreamResponse:
    rt = request.app[RUNTIME]
    view = _view(request)
    doc_id = request.match_info["id"]
    access = access_for(rt, request)
    doc = rt.ready_db().read_now(lambda conn: public(view, stored_doc(conn, view, doc_id, access)))
    values = {f.name: form_text(f, doc.get(f.name)) for f in _form_fields(view, False) if f.file is None}
    return _render_form(
        request, admin, view, creating=False, values=values, issues={}, message=None,
        doc_id=doc[view.codec.pk.name], files=_file_links(request.app[SITE], view, doc),
    )  # fmt: skip


async def update(request: web.Request, admin: Admin) -> web.StreamResponse:
    site = request.app[SITE]
    rt = request.app[RUNTIME]
    view = _view(request)
    doc_id = request.match_info["id"]
    access = access_for(rt, request)
    stored = rt.ready_db().read_now(lambda conn: public(view, stored_doc(conn, view, doc_id, access)))
    pk_value = stored[view.codec.pk.name]
    form = await request.post()
    body, texts, early = _read_form(view, form, creating=False, stored=stored)
    files = _file_links(site, view, stored)
    if early:
        return _render_form(
            request, admin, view, creating=False, values=texts,
            issues=_with_codec_issues(view, early, body, creating=False, clock=rt.clock),
            message="fix the fields marked below",
            doc_id=pk_value, files=files,
        )  # fmt: skip
    upload = Upload(body)
    try:
        await _read_files(request, view, form, upload)
        if body or upload.edits:
            access = access_for(rt, request, body)
            step = prepare_update(view, doc_id, body, access, rt.clock, upload.edits, upload.released)
            await rt.ready_db().write(step)
    except AlyxError as e:
        await discard(request, upload)
        issues = _issues(e)
        return _render_form(
            request, admin, view, creating=False, values=texts, issues=issues,
            message=None if issues else e.message, doc_id=pk_value, files=files,
        )  # fmt: skip
    except BaseException:
        await discard(request, upload)
        raise
    await release(request, upload.released)
    changed = bool(body or upload.edits)
    raise web.HTTPSeeOther(
        _doc_url(site, view.name, pk_value) + "?saved=" + ("updated" if changed else "unchanged")
    )


# -- delete ---------------------------------------------------------------------------------
async def delete_one(request: web.Request, admin: Admin) -> web.StreamResponse:
    site = request.app[SITE]
    rt = request.app[RUNTIME]
    view = _view(request)
    released: list[str] = []
    await rt.ready_db().write(
        prepare_delete(view, request.match_info["id"], access_for(rt, request), released)
    )
    await release(request, released)
    raise web.HTTPSeeOther(site.url(f"data/{view.name}", deleted="1"))


async def file(request: web.Request, admin: Admin) -> web.StreamResponse:
    """One file of a document (or `?thumb=` its thumbnail): admins read every document,
    protected fields included."""
    rt = request.app[RUNTIME]
    view = _view(request)
    access = access_for(rt, request)
    doc = rt.ready_db().read_now(lambda conn: stored_doc(conn, view, request.match_info["id"], access))
    return await serve_file(request, view, request.match_info["field"], doc, request.match_info["name"])


async def delete_many(request: web.Request, admin: Admin) -> web.StreamResponse:
    """Delete the checked documents in one transaction: all of them, or none and the
    first failure named."""
    site = request.app[SITE]
    rt = request.app[RUNTIME]
    view = _view(request)
    form = await request.post()
    ids = [v for v in form.getall("id", ()) if isinstance(v, str) and v]
    if not ids:
        raise InvalidQuery("no documents selected: check the rows to delete first")
    if len(ids) > MAX_BULK:
        raise InvalidQuery(f"{len(ids)} documents selected; delete at most {MAX_BULK} at once")
    access = access_for(rt, request)
    released: list[str] = []
    steps = [prepare_delete(view, doc_id, access, released) for doc_id in ids]

    def failed(index: int, error: AlyxError) -> AlyxError:
        return AlyxError(
            f"nothing was deleted: document {ids[index]!r} could not be: {error.message}",
            code=error.code,
            status=error.status,
        )

    await rt.ready_db().write(all_or_nothing(steps, failed))
    await release(request, released)
    back = form.get("back")
    listing = site.url(f"data/{view.name}")
    target = back if isinstance(back, str) and back.startswith(listing) and "\n" not in back else listing
    target = _without(target, ("deleted", "after", "before")) if target != listing else listing
    sep = "&" if "?" in target else "?"
    raise web.HTTPSeeOther(f"{target}{sep}deleted={len(ids)}")


def _without(url: str, names: tuple[str, ...]) -> str:
    from urllib.parse import parse_qsl, urlsplit

    parts = urlsplit(url)
    kept = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in names]
    return parts.path + ("?" + urlencode(kept) if kept else "")


# -- how values show ------------------------------------------------------------------------
CELL_CHARS = 120


def cell(value: Any, f: Field | None = None, *, full: bool = False) -> str:
    """A value as the text of a table cell (cut at CELL_CHARS) or of the doc page (`full`);
    the template escapes it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if f is not None and f.type is FieldType.FILE:
        names = [str(e.get("name")) for e in file_entries(value)]
        return ", ".join(names)
    if f is not None and f.type is FieldType.BLOB and isinstance(value, str):
        size = len(value) * 3 // 4 - value[-2:].count("=")
        return f"{size} bytes" if not full else f"{size} bytes (base64) {value}"
    text = orjson.dumps(value).decode() if isinstance(value, dict | list) else str(value)
    if not full and len(text) > CELL_CHARS:
        return text[: CELL_CHARS - 1] + "…"
    return text


def pretty_json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()


def add_routes(app: web.Application, site: Site) -> None:
    site.filters["cell"] = cell
    site.filters["pretty_json"] = pretty_json
    site.nav("data", "Data", "data")
    site.get(app, "data", index, permission=PERMISSION)
    site.get(app, "data/{collection}", table, permission=PERMISSION)
    site.get(app, "data/{collection}/new", new_form, permission=PERMISSION)
    site.post(app, "data/{collection}/new", create, permission=PERMISSION)
    site.post(app, "data/{collection}/delete", delete_many, permission=PERMISSION)
    site.get(app, "data/{collection}/doc/{id}", show, permission=PERMISSION)
    site.get(app, "data/{collection}/doc/{id}/edit", edit_form, permission=PERMISSION)
    site.post(app, "data/{collection}/doc/{id}/edit", update, permission=PERMISSION)
    site.post(app, "data/{collection}/doc/{id}/delete", delete_one, permission=PERMISSION)
    site.get(app, "data/{collection}/doc/{id}/file/{field}/{name}", file, permission=PERMISSION)
