"""A function's input or output fields, checked with the database layer's field codecs.

The fields are written like schema.yaml's, so the same converters and validations
(`alyx_server.db.codec`) check them: a VALIDATION_ERROR lists every failing field with
the field codes of the REST API (`required`, `invalid_type`, `max_length`, ...), plus
`unknown_field` for a key the manifest does not declare.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from alyx_server.db.codec import CollectionCodec, codec_for
from alyx_server.db.validation import InvalidValue
from alyx_server.errors import FieldIssue, ValidationError
from alyx_server.schema.model import Collection, Field, FieldType
from alyx_server.tools.timestamps import SYSTEM_CLOCK, Clock

__all__ = ["FieldSet"]

# The codec compiles collections, which have a primary key; this one is never a field
# name a manifest can declare (names match ^[a-z][a-z0-9_]*$).
_KEY = Field(name="#", type=FieldType.INT, primary=True)


class FieldSet:
    """The declared fields of a function's `input` or `output`."""

    def __init__(self, fields: tuple[Field, ...], what: str) -> None:
        self.fields = fields
        self.what = what
        self._codec: CollectionCodec = codec_for(Collection(what, (*fields, _KEY)))
        self._names = tuple(f.name for f in fields)

    @property
    def names(self) -> tuple[str, ...]:
        return self._names

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """The fields as JSON (for listings and code generators)."""
        out: dict[str, dict[str, Any]] = {}
        for f in self.fields:
            spec: dict[str, Any] = {"type": f.type.value}
            if f.nullable:
                spec["nullable"] = True
            if f.default is not None:
                spec["default"] = f.default.to_yaml()
            out[f.name] = spec
        return out

    def check(self, data: Any, *, clock: Clock = SYSTEM_CLOCK) -> dict[str, Any]:
        """`data` with defaults applied, or ValidationError naming every bad field."""
        if not isinstance(data, Mapping):
            raise ValidationError(f"{self.what} must be a JSON object")
        codec = self._codec
        doc = codec.with_defaults(data, clock)
        issues: list[FieldIssue] = []
        for key in data:
            if key not in self._names:
                known = ", ".join(self._names) or "(none)"
                message = f"unknown field {key!r}; fields of the {self.what} are: {known}"
                issues.append(FieldIssue(str(key), "unknown_field", message))
        for f in self.fields:
            if f.name not in doc:
                if f.required_on_create:
                    issues.append(FieldIssue(f.name, "required", f"{f.name} is required"))
                continue
            try:
                codec.fields[f.name].encode(doc[f.name])
            except InvalidValue as e:
                issues.append(FieldIssue(f.name, e.code, e.message))
        if issues:
            listed = "; ".join(i.message for i in issues)
            raise ValidationError(f"invalid {self.what}: {listed}", issues)
        doc.pop(_KEY.name, None)
        return doc
