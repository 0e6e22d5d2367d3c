"""`type: file` in schema.yaml: options read into the model, mistakes refused with file:line."""

from __future__ import annotations

import pytest

from alyx_server.errors import SchemaError
from alyx_server.schema.loader import parse_schema
from alyx_server.schema.model import FieldType, FileOptions, Schema


def _schema(field: str) -> str:
    return (
        "version: 1\ncollections:\n  posts:\n    fields:\n"
        "      id: { type: uuid, primary: true, default: auto }\n"
        f"      cover: {field}\n"
    )


def test_file_options_are_read_and_round_trip_through_snapshots() -> None:
    options = (
        "maxFiles: 5, maxSize: 2MiB, mimeTypes: [image/*, application/pdf], protected: true, "
        "thumbs: [100x100, 640x480f]"
    )
    schema = parse_schema(_schema(f"{{ type: file, nullable: true, {options} }}"))
    field = schema.get("posts").field("cover")  # type: ignore[union-attr]
    assert field is not None and field.type is FieldType.FILE and field.sql_type == "TEXT"
    assert field.file == FileOptions(
        5, 2 * 1024 * 1024, ("image/*", "application/pdf"), True, ("100x100", "640x480f")
    )
    assert Schema.from_dict(schema.to_dict()) == schema


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ("{ type: file, maxFiles: 0 }", "schema.yaml:6:38: collections.posts.fields.cover.maxFiles"),
        ("{ type: file, maxFiles: 0 }", "maxFiles must be a whole number from 1 to 100"),
        ("{ type: file, maxSize: lots }", "maxSize must be a size"),
        ("{ type: file, mimeTypes: [png] }", "'png' is not a content type"),
        ("{ type: file, mimeTypes: image/png }", "mimeTypes must be a non-empty list"),
        ("{ type: file, thumbs: [100y] }", "'100y' is not a thumbnail size"),
        ("{ type: file, thumbs: [9000x10] }", "'9000x10' is not a thumbnail size"),
        ("{ type: file, protected: yes please }", "protected must be true or false"),
        ("{ type: file, unique: true }", '"unique" does not apply to file fields'),
        ("{ type: file, default: x }", '"default" does not apply to file fields'),
        ("{ type: string, maxFiles: 2 }", '"maxFiles" applies only to file fields, not string'),
        ("{ type: file, maxFile: 2 }", 'did you mean "maxFiles"'),
    ],
)
def test_bad_file_options_are_refused_with_their_location(field: str, message: str) -> None:
    with pytest.raises(SchemaError) as caught:
        parse_schema(_schema(field))
    assert message in str(caught.value) or message in (caught.value.hint or ""), (
        str(caught.value),
        caught.value.hint,
    )
