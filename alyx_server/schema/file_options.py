"""The options of a `file` field in schema.yaml, checked and turned into `FileOptions`.

```yaml
avatar:  { type: file, nullable: true, maxSize: 2MiB, mimeTypes: [image/png, image/jpeg],
           thumbs: [100x100, 400x300f] }
papers:  { type: file, nullable: true, maxFiles: 10, protected: true, mimeTypes: [application/pdf] }
```

`maxFiles` (1 to 100, default 1: a single file), `maxSize` (bytes or a size such as `5MiB`),
`mimeTypes` (content types such as `image/png`, or `image/*`; checked against the bytes,
never the name), `protected` (downloads need a file token), `thumbs` (`WxH` crops and
`WxHf` fits, each side 1 to 2000). A file field takes none of the other field options
except `nullable` (a non-nullable one needs a file on create) and `internal`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Protocol

from alyx_server.errors import SchemaError
from alyx_server.schema.model import FileOptions
from alyx_server.tools.sizes import parse_size
from alyx_server.tools.yaml_lines import YamlEntry, YamlNode, YamlScalar, YamlSequence, kind_name

__all__ = [
    "FILE_ONLY_ALLOWED",
    "FILE_OPTIONS",
    "MAX_FILES_LIMIT",
    "THUMB_PATTERN",
    "parse_file_options",
]

FILE_OPTIONS = ("maxFiles", "maxSize", "mimeTypes", "protected", "thumbs")
FILE_ONLY_ALLOWED = ("type", "nullable", "internal", *FILE_OPTIONS)
"""The options a file field may carry; the others (unique, default, ...) make no sense on it."""
MAX_FILES_LIMIT = 100
MAX_THUMB_SIDE = 2000
THUMB_PATTERN = re.compile(r"^([1-9][0-9]{0,3})x([1-9][0-9]{0,3})(f?)$")
_MIME = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]*/(\*|[a-z0-9][a-z0-9!#$&^_.+-]*)$")


class _Source(Protocol):
    def error(self, message: str, node: YamlNode | None, path: str | None, hint: str) -> SchemaError: ...


class _Option(Protocol):
    @property
    def entry(self) -> YamlEntry: ...

    @property
    def path(self) -> str: ...

    @property
    def node(self) -> YamlNode: ...


def _value(option: _Option) -> Any:
    node = option.node
    return node.value if isinstance(node, YamlScalar) else node.to_python()


def parse_file_options(src: _Source, options: Mapping[str, _Option], path: str) -> FileOptions:
    """The `FileOptions` of a field of type file; a located SchemaError for a bad option."""
    for name, option in options.items():
        if name not in FILE_ONLY_ALLOWED:
            raise src.error(
                f'"{name}" does not apply to file fields', option.entry.key, option.path,
                f"remove {name}; a file field takes {', '.join(FILE_ONLY_ALLOWED[1:])}",
            )  # fmt: skip
    max_files = _max_files(src, options["maxFiles"]) if "maxFiles" in options else 1
    max_size = _max_size(src, options["maxSize"]) if "maxSize" in options else None
    mimes = _mime_types(src, options["mimeTypes"]) if "mimeTypes" in options else ()
    protected = _protected(src, options["protected"]) if "protected" in options else False
    thumbs = _thumbs(src, options["thumbs"]) if "thumbs" in options else ()
    return FileOptions(max_files, max_size, mimes, protected, thumbs)


def _max_files(src: _Source, option: _Option) -> int:
    value = _value(option)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_FILES_LIMIT:
        raise src.error(
            f"maxFiles must be a whole number from 1 to {MAX_FILES_LIMIT}, not {value!r}",
            option.node, option.path, "write maxFiles: 1 for a single file, or e.g. maxFiles: 10",
        )  # fmt: skip
    return value


def _max_size(src: _Source, option: _Option) -> int:
    value = _value(option)
    try:
        if isinstance(value, bool):
            raise ValueError(value)
        size = value if isinstance(value, int) else parse_size(str(value))
    except ValueError as e:
        raise src.error(
            f"maxSize must be a size, not {value!r}", option.node, option.path,
            "write a number of bytes or a size such as 512KiB or 5MiB",
        ) from e  # fmt: skip
    if size < 1:
        raise src.error("maxSize must be at least 1 byte", option.node, option.path, "write e.g. 5MiB")
    return size


def _string_list(src: _Source, option: _Option, what: str, example: str) -> list[tuple[str, YamlNode]]:
    node = option.node
    if not isinstance(node, YamlSequence) or not node.items:
        raise src.error(
            f"{option.entry.name} must be a non-empty list of {what}, not {kind_name(node)}",
            node, option.path, f"write {option.entry.name}: {example}",
        )  # fmt: skip
    out = []
    for index, item in enumerate(node.items):
        value = item.value if isinstance(item, YamlScalar) else None
        if not isinstance(value, str):
            raise src.error(
                f"{option.entry.name}[{index}] must be a string, not {kind_name(item)}",
                item, f"{option.path}[{index}]", f"write {option.entry.name}: {example}",
            )  # fmt: skip
        out.append((value, item))
    return out


def _mime_types(src: _Source, option: _Option) -> tuple[str, ...]:
    example = "[image/png, image/jpeg] or [image/*]"
    out: list[str] = []
    for index, (value, node) in enumerate(_string_list(src, option, "content types", example)):
        mime = value.strip().lower()
        if not _MIME.match(mime):
            raise src.error(
                f"{value!r} is not a content type", node, f"{option.path}[{index}]",
                f"write a type/subtype such as image/png or image/*, as in {example}",
            )  # fmt: skip
        if mime not in out:
            out.append(mime)
    return tuple(out)


def _protected(src: _Source, option: _Option) -> bool:
    value = _value(option)
    if not isinstance(value, bool):
        raise src.error(
            f"protected must be true or false, not {kind_name(option.node)}",
            option.node, option.path, "write protected: true",
        )  # fmt: skip
    return value


def _thumbs(src: _Source, option: _Option) -> tuple[str, ...]:
    example = "[100x100, 640x480f]"
    out: list[str] = []
    for index, (value, node) in enumerate(_string_list(src, option, "thumbnail sizes", example)):
        match = THUMB_PATTERN.match(value)
        if match is None or max(int(match.group(1)), int(match.group(2))) > MAX_THUMB_SIDE:
            raise src.error(
                f"{value!r} is not a thumbnail size", node, f"{option.path}[{index}]",
                f"write WIDTHxHEIGHT (each 1 to {MAX_THUMB_SIDE}) to crop, with an f to fit "
                f"instead, as in {example}",
            )  # fmt: skip
        if value not in out:
            out.append(value)
    return tuple(out)
