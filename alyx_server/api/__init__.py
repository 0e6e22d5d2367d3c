"""The HTTP API (SPEC §7, §12): one module per endpoint group, each with `add_routes(app)`.

    pipeline.py     the one middleware: request id, CORS, client IP, errors, access log
    runtime.py      what handlers share: the app key, readiness, the collection catalog
    bodies.py       JSON request bodies
    collections.py  CRUD and list on /api/collections/{c}
    listing.py      list query parameters; expand.py  reference expansion
    batch.py        POST /api/batch
    meta.py         /health*, /metrics, /api/openapi.json
    openapi.py      the OpenAPI 3.1 document from the live schema
"""

__all__: list[str] = []
