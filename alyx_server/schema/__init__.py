"""schema.yaml: the model, its loader and validation, DDL, the differ and table rebuilds."""

from alyx_server.schema.model import (
    ACTIONS,
    SQL_TYPES,
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
from alyx_server.schema.system_tables import USERS_TABLE

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
