"""The database layer: one SQLite file, reader connections, one group-committing writer.

Database            async facade (database.py)
WriteQueue          the writer thread and group commit (writer.py)
ChangeFeed          committed changes as events, plus the poller (changes.py)
ListQuery, Predicate, Condition, parse_filter  the query builder (query.py)
insert_doc ... list_docs  CRUD inside read/write functions (documents.py)
encode_doc, decode_row    type conversion and validation (codec.py)
"""

from alyx_server.db.changes import ChangeEvent, ChangeFeed, ChangePoller
from alyx_server.db.codec import codec_for, decode_row, encode_doc, with_defaults
from alyx_server.db.connection import open_connection
from alyx_server.db.database import Database
from alyx_server.db.documents import (
    ListResult,
    delete_doc,
    get_doc,
    insert_doc,
    list_docs,
    update_doc,
)
from alyx_server.db.query import (
    Condition,
    ListQuery,
    Predicate,
    build_list_sql,
    condition_check,
    condition_predicate,
    parse_condition,
    parse_filter,
    parse_sort,
)
from alyx_server.db.writer import WriteQueue, WriteStats

__all__ = [
    "ChangeEvent",
    "ChangeFeed",
    "ChangePoller",
    "Condition",
    "Database",
    "ListQuery",
    "ListResult",
    "Predicate",
    "WriteQueue",
    "WriteStats",
    "build_list_sql",
    "codec_for",
    "condition_check",
    "condition_predicate",
    "decode_row",
    "delete_doc",
    "encode_doc",
    "get_doc",
    "insert_doc",
    "list_docs",
    "open_connection",
    "parse_condition",
    "parse_filter",
    "parse_sort",
    "update_doc",
    "with_defaults",
]
