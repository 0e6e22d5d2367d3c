"""YAML that remembers where every key and value was written.

`yaml.safe_load` forgets positions and silently keeps the last of two equal keys, which
makes errors in hand-written files hard to find. `parse_yaml` composes the YAML node graph
and turns it into small immutable nodes (`YamlMapping`, `YamlSequence`, `YamlScalar`), each
with its 1-based line and column, refusing duplicate keys with the line of both.

Scalars resolve as `yaml.safe_load` resolves them (YAML 1.1 core schema: `yes` is true,
`2026-01-31` is a date), with one difference: mapping keys are always strings, the key as
written (`on:` is the key "on", not True; `1:` is the key "1").
Merge keys (`<<: *anchor`) are supported; explicit keys win over merged ones.

Text is read by libyaml (PyYAML's C parser, several times faster: a deploy reads the
schema in every worker) whenever PyYAML was built with it; PyYAML's own composer still
builds the nodes, so the limits below hold either way. PyYAML's pure-Python reader reads
text libyaml refuses (its errors are the ones reported) and text the two read differently
(`_PURE_ONLY`, `_FastLoader.compose_scalar_node`): the result never depends on which
reader read it.

Hostile text is refused with a located `YamlError` rather than exhausting the stack or
memory: nesting deeper than `MAX_DEPTH` levels (PyYAML composes recursively), a document
whose aliases expand it by more than `MAX_ALIAS_NODES` nodes ("billion laughs"), or more
than `MAX_NODES` nodes in all, and a scalar whose tag or form cannot be built
(`2026-13-45` resolves as a date and is not one).
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TypeAlias

import yaml
import yaml.composer
import yaml.constructor
import yaml.resolver

__all__ = [
    "MAX_ALIAS_NODES",
    "MAX_DEPTH",
    "MAX_NODES",
    "ScalarValue",
    "YamlEntry",
    "YamlError",
    "YamlMapping",
    "YamlNode",
    "YamlScalar",
    "YamlSequence",
    "compose_yaml",
    "kind_name",
    "parse_yaml",
]

ScalarValue: TypeAlias = str | int | float | bool | datetime.date | datetime.datetime | bytes | None

_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MERGE_TAG = "tag:yaml.org,2002:merge"
# Limits no hand-written file comes close to; each guards the loader against a hostile one.
MAX_DEPTH = 100  # nested lists/mappings; PyYAML and the converter recurse per level
MAX_NODES = 1_000_000  # nodes of the document once aliases are expanded
MAX_ALIAS_NODES = 100_000  # nodes added by expanding aliases ("billion laughs")


class YamlError(Exception):
    """Text that is not valid YAML, or YAML this module refuses (duplicate keys, ...).

    `line` and `column` are 1-based, or None when the problem has no position.
    """

    def __init__(self, message: str, line: int | None = None, column: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column

    def __str__(self) -> str:
        if self.line is None:
            return self.message
        return f"line {self.line}, column {self.column}: {self.message}"


@dataclass(frozen=True, slots=True)
class YamlScalar:
    """A scalar value. `content_line`/`content_column` locate its first character of text
    (after an opening quote, or on the first line of a `|`/`>` block)."""

    value: ScalarValue
    line: int
    column: int
    text: str
    tag: str
    style: str | None
    content_line: int
    content_column: int

    def to_python(self) -> ScalarValue:
        return self.value


@dataclass(frozen=True, slots=True)
class YamlEntry:
    """One `key: value` pair of a mapping; the key's value is always a string."""

    key: YamlScalar
    value: YamlNode

    @property
    def name(self) -> str:
        return str(self.key.value)


@dataclass(frozen=True, slots=True)
class YamlMapping:
    """A mapping, its entries in the order written."""

    entries: tuple[YamlEntry, ...]
    line: int
    column: int

    def get(self, key: str) -> YamlEntry | None:
        for entry in self.entries:
            if entry.key.value == key:
                return entry
        return None

    def keys(self) -> tuple[str, ...]:
        return tuple(entry.name for entry in self.entries)

    def __contains__(self, key: object) -> bool:
        return any(entry.key.value == key for entry in self.entries)

    def __iter__(self) -> Iterator[YamlEntry]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def to_python(self) -> dict[str, Any]:
        return {entry.name: entry.value.to_python() for entry in self.entries}


@dataclass(frozen=True, slots=True)
class YamlSequence:
    """A sequence, its items in order."""

    items: tuple[YamlNode, ...]
    line: int
    column: int

    def __iter__(self) -> Iterator[YamlNode]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def to_python(self) -> list[Any]:
        return [item.to_python() for item in self.items]


YamlNode: TypeAlias = YamlScalar | YamlMapping | YamlSequence


def kind_name(node: YamlNode) -> str:
    """A short description of a node for messages: "a mapping", "a list", "a string"..."""
    if isinstance(node, YamlMapping):
        return "a mapping"
    if isinstance(node, YamlSequence):
        return "a list"
    value = node.value
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, datetime.datetime):
        return "a timestamp"
    if isinstance(value, datetime.date):
        return "a date"
    if isinstance(value, bytes):
        return "binary data"
    return "a string"


def parse_yaml(text: str) -> YamlNode | None:
    """Parse one YAML document into located nodes; None when the text holds no document.

    Raises `YamlError` (with line and column when known) for malformed YAML, several
    documents, duplicate keys, unsupported tags, recursive aliases, scalars that cannot be
    built and documents past the size limits above.
    """
    root, loader = _compose(text)
    if root is None:
        return None
    try:
        _check_expansion(root)
        return _Converter(loader, text).convert(root)
    except yaml.MarkedYAMLError as e:
        raise _marked_error(e) from e
    except yaml.YAMLError as e:
        raise YamlError(str(e)) from e


def compose_yaml(text: str | bytes) -> yaml.Node | None:
    """PyYAML's node graph of one document, like `yaml.compose`, for readers that walk
    nodes themselves: PyYAML's own errors pass through unchanged, and the limits above
    raise a located `YamlError`."""
    fast = _fast_compose(text)
    root: yaml.Node | None
    if fast is not None:
        root = fast[0]
    else:
        loader = _DepthLimitedLoader(text)
        try:
            root = loader.get_single_node()
        finally:
            loader.dispose()
    if root is not None:
        _check_expansion(root)
    return root


def _compose(text: str | bytes) -> tuple[yaml.Node | None, yaml.constructor.SafeConstructor]:
    fast = _fast_compose(text)
    if fast is not None:
        return fast
    try:
        loader = _DepthLimitedLoader(text)
    except yaml.reader.ReaderError as e:
        raise _reader_error(text, e) from e
    try:
        return loader.get_single_node(), loader
    except yaml.MarkedYAMLError as e:
        raise _marked_error(e) from e
    except yaml.reader.ReaderError as e:
        raise _reader_error(text, e) from e
    except yaml.YAMLError as e:
        raise YamlError(str(e)) from e
    finally:
        loader.dispose()


class _DepthLimit:
    """A composer that refuses nesting past MAX_DEPTH before Python's stack runs out
    (composition recurses once per level)."""

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[attr-defined]
                raise YamlError(
                    f"nested more than {MAX_DEPTH} levels deep: flatten the structure",
                    mark.line + 1,
                    mark.column + 1,
                )
            node: yaml.Node | None = super().compose_node(parent, index)  # type: ignore[misc]
            return node
        finally:
            self._depth -= 1


class _DepthLimitedLoader(_DepthLimit, yaml.SafeLoader):
    """PyYAML's pure-Python SafeLoader with the depth limit."""


# Text the pure-Python reader reads alone: characters its reader refuses (libyaml's set
# differs), the Unicode line breaks, and what libyaml accepts where PyYAML refuses it:
# tabs between tokens, a comment right after a block scalar's | or > (and, found per value
# below, some plain values).
_PURE_ONLY = re.compile(
    "[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]|[\t\ufeff\x85\u2028\u2029]|[|>][-+0-9]*#"
)


class _PureReaderNeeded(Exception):
    """Text the pure-Python reader reads differently from libyaml: it reads it alone."""


if yaml.__with_libyaml__:  # else PyYAML was built without libyaml: the pure reader does all
    from yaml._yaml import CParser

    class _FastLoader(
        _DepthLimit,
        yaml.composer.Composer,
        CParser,
        yaml.constructor.SafeConstructor,
        yaml.resolver.Resolver,
    ):
        """libyaml's parser (events) under PyYAML's composer, so that the depth limit, the
        anchors and the resolution of tags are those of the pure-Python loader."""

        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            yaml.composer.Composer.__init__(self)
            yaml.constructor.SafeConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)

        def compose_scalar_node(self, anchor: Any) -> yaml.ScalarNode:
            event: Any = self.peek_event()  # a ScalarEvent: the composer saw it start a scalar
            plain = event.style in (None, "")
            value = event.value
            if event.tag is not None or (plain and (value == "" or value[0] in "@`" or "?" in value)):
                # libyaml places an empty value elsewhere than PyYAML (which messages
                # point at), resolves a few explicit tags (`!`) differently, and takes
                # plain values PyYAML refuses: starting with an indicator it reserves,
                # or with a ? inside a flow mapping.
                raise _PureReaderNeeded
            node: yaml.ScalarNode = super().compose_scalar_node(anchor)
            # libyaml calls the plain style "", PyYAML None: readers test `style is None`.
            node.style = node.style or None
            return node


def _fast_compose(text: str | bytes) -> tuple[yaml.Node | None, yaml.constructor.SafeConstructor] | None:
    """The node graph libyaml reads, or None when the pure-Python reader must read the
    text: no libyaml, bytes that are not plain UTF-8, characters PyYAML refuses, or text
    libyaml refuses (the pure reader words the error as it always has). Limits past
    which the pure reader refuses too (YamlError) are raised here."""
    if not yaml.__with_libyaml__:
        return None
    if isinstance(text, bytes):
        if text.startswith((b"\xff\xfe", b"\xfe\xff", b"\xef\xbb\xbf")):
            return None
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            return None
    if _PURE_ONLY.search(text):
        return None
    loader = _FastLoader(text)
    try:
        return loader.get_single_node(), loader
    except (yaml.YAMLError, _PureReaderNeeded):
        return None
    finally:
        loader.dispose()


def _check_expansion(root: yaml.Node) -> None:
    """Refuse a graph whose aliases would expand past the limits, before expanding it.

    Sizes are counted once per distinct node (the graph shares aliased nodes), so an alias
    bomb is measured in a time proportional to its text, not to its expansion.
    """
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: yaml.Node) -> int:
        known = sizes.get(id(node))
        if known is not None:
            return known
        if id(node) in active:
            raise _error_at(node, "recursive alias: a node that contains itself")
        active.add(id(node))
        total = 1
        if isinstance(node, yaml.SequenceNode):
            total += sum(size(item) for item in node.value)
        elif isinstance(node, yaml.MappingNode):
            total += sum(size(key) + size(value) for key, value in node.value)
        active.discard(id(node))
        sizes[id(node)] = total
        return total

    expanded = size(root)
    if expanded > MAX_NODES or expanded - len(sizes) > MAX_ALIAS_NODES:
        raise _error_at(
            root,
            f"the document expands to {expanded} nodes through its aliases (*name); "
            f"at most {MAX_NODES} in all and {MAX_ALIAS_NODES} added by aliases are read: "
            "write the values out or use fewer aliases",
        )


def _reader_error(text: str | bytes, e: yaml.reader.ReaderError) -> YamlError:
    if e.encoding != "unicode":  # bytes that do not decode (PyYAML's own reason says which)
        return YamlError(f"the file is not UTF-8 text (byte {e.position}): save it as UTF-8")
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    line, column = _position(text, e.position)
    code = e.character if isinstance(e.character, int) else ord(str(e.character)[:1] or "?")
    return YamlError(f"character U+{code:04X} is not allowed in YAML text", line, column)


def _marked_error(e: yaml.MarkedYAMLError) -> YamlError:
    mark = e.problem_mark or e.context_mark
    message = e.problem or e.context or "invalid YAML"
    if e.context and e.problem:
        where = ""
        if e.context_mark is not None:
            mark = e.context_mark
            where = f" that starts at line {mark.line + 1}, column {mark.column + 1}"
        message = f"{e.problem} ({e.context}{where})"
        mark = e.problem_mark or e.context_mark
    if mark is None:
        return YamlError(message)
    return YamlError(message, mark.line + 1, mark.column + 1)


def _position(text: str, index: int) -> tuple[int, int]:
    before = text[:index]
    line = before.count("\n") + 1
    return line, index - (before.rfind("\n") + 1) + 1


class _Converter:
    """Turns the composed node graph into located nodes, node by node.

    The graph has passed `_check_expansion`, so it holds no recursive alias."""

    def __init__(self, loader: yaml.constructor.SafeConstructor, text: str) -> None:
        self._loader = loader
        self._text = text

    def convert(self, node: yaml.Node) -> YamlNode:
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node)
        if isinstance(node, yaml.SequenceNode):
            return self._sequence(node)
        return self._scalar(node)

    def _scalar(self, node: yaml.Node) -> YamlScalar:
        try:
            value = self._loader.construct_object(node, deep=True)
        except (ValueError, OverflowError, AttributeError, IndexError) as e:
            # PyYAML resolves `2026-13-45` as a date, then fails to build it.
            kind = node.tag.rsplit(":", 1)[-1]
            reason = f" ({e})" if isinstance(e, ValueError | OverflowError) else ""
            raise _error_at(
                node,
                f"{node.value!r} reads as a {kind} but is not a valid one{reason}: "
                'correct it, or quote it ("...") to keep it as text',
            ) from e
        return self._located_scalar(node, value)

    def _located_scalar(self, node: yaml.Node, value: ScalarValue) -> YamlScalar:
        line, column = node.start_mark.line + 1, node.start_mark.column + 1
        style = getattr(node, "style", None)
        content_line, content_column = line, column
        if style in ('"', "'"):
            content_column += 1
        elif style in ("|", ">"):
            content_line, content_column = self._block_start(node.start_mark.index, line)
        return YamlScalar(
            value=value,
            line=line,
            column=column,
            text=str(node.value),
            tag=node.tag,
            style=style,
            content_line=content_line,
            content_column=content_column,
        )

    def _block_start(self, index: int, line: int) -> tuple[int, int]:
        """Where the text of a `|` or `>` block scalar begins: its first non-blank line."""
        rest = self._text[index:].split("\n")
        for offset, source_line in enumerate(rest[1:], start=1):
            if source_line.strip():
                return line + offset, len(source_line) - len(source_line.lstrip(" ")) + 1
        return line, 1

    def _sequence(self, node: yaml.SequenceNode) -> YamlSequence:
        if node.tag != _SEQ_TAG:
            raise _error_at(node, f"unsupported tag {node.tag!r} on a list")
        items = tuple(self.convert(item) for item in node.value)
        return YamlSequence(items, node.start_mark.line + 1, node.start_mark.column + 1)

    def _mapping(self, node: yaml.MappingNode) -> YamlMapping:
        if node.tag != _MAP_TAG:
            raise _error_at(node, f"unsupported tag {node.tag!r} on a mapping")
        explicit: list[YamlEntry] = []
        merged: list[YamlEntry] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merged.extend(self._merge_sources(value_node))
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                message = "a mapping key must be a plain value, not a list or mapping"
                raise _error_at(key_node, message)
            key = self._located_scalar(key_node, str(key_node.value))
            for earlier in explicit:
                if earlier.key.value == key.value:
                    raise YamlError(
                        f"duplicate key {key.value!r} (first written at line {earlier.key.line}); "
                        "YAML keeps only one of them: remove or rename one",
                        key.line,
                        key.column,
                    )
            explicit.append(YamlEntry(key, self.convert(value_node)))
        names = {entry.key.value for entry in explicit}
        entries: list[YamlEntry] = []
        for entry in merged:
            if entry.key.value not in names:
                names.add(entry.key.value)
                entries.append(entry)
        entries.extend(explicit)
        return YamlMapping(tuple(entries), node.start_mark.line + 1, node.start_mark.column + 1)

    def _merge_sources(self, node: yaml.Node) -> list[YamlEntry]:
        """The entries of `<<: *a` or `<<: [*a, *b]`; the first source wins on equal keys."""
        sources = node.value if isinstance(node, yaml.SequenceNode) else [node]
        out: list[YamlEntry] = []
        for source in sources:
            if not isinstance(source, yaml.MappingNode):
                raise _error_at(source, "a merge key (<<) takes a mapping or a list of mappings")
            converted = self.convert(source)
            assert isinstance(converted, YamlMapping)
            out.extend(converted.entries)
        return out


def _error_at(node: yaml.Node, message: str) -> YamlError:
    return YamlError(message, node.start_mark.line + 1, node.start_mark.column + 1)
