"""schema.yaml: the model, its loader and validation, DDL, the differ and table rebuilds."""

from alyx_server.schema.model import (
    ACTIONS,
    SQL_TYPES,
    USERS_TABLE,
    Collection,
    Default,
    Field,
    FieldType,
    Index,
    Reference,
    Rules,
    Schema,
    Validation,
)

__all__ = [
    "ACTIONS",
    "SQL_TYPES",
    "USERS_TABLE",
    "Collection",
    "Default",
    "Field",
    "FieldType",
    "Index",
    "Reference",
    "Rules",
    "Schema",
    "Validation",
]
