"""YAML with positions: values as safe_load gives them, plus where each was written."""

from __future__ import annotations

import datetime

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from alyx_server.tools import yaml_lines
from alyx_server.tools.yaml_lines import (
    YamlError,
    YamlMapping,
    YamlNode,
    YamlScalar,
    YamlSequence,
    kind_name,
    parse_yaml,
)

TEXT = """\
server:
  port: 8090
  hosts: [a, "b"]
when: 2026-01-31
rule: |
    auth != null
"""


def test_values_and_positions_are_kept() -> None:
    root = parse_yaml(TEXT)
    assert isinstance(root, YamlMapping)
    assert root.keys() == ("server", "when", "rule")
    server = root.get("server")
    assert server is not None and isinstance(server.value, YamlMapping)
    port = server.value.get("port")
    assert port is not None and isinstance(port.value, YamlScalar)
    assert (port.key.line, port.key.column) == (2, 3)
    assert (port.value.value, port.value.line, port.value.column) == (8090, 2, 9)
    hosts = server.value.get("hosts")
    assert hosts is not None and isinstance(hosts.value, YamlSequence)
    b = hosts.value.items[1]
    assert isinstance(b, YamlScalar)
    assert (b.value, b.line, b.column, b.content_column, b.style) == ("b", 3, 14, 15, '"')
    assert root.to_python() == yaml.safe_load(TEXT)
    assert root.to_python()["when"] == datetime.date(2026, 1, 31)


def test_block_scalars_locate_their_first_line_of_text() -> None:
    root = parse_yaml(TEXT)
    assert isinstance(root, YamlMapping)
    rule = root.get("rule")
    assert rule is not None and isinstance(rule.value, YamlScalar)
    assert (rule.value.line, rule.value.column) == (5, 7)
    assert (rule.value.content_line, rule.value.content_column) == (6, 5)


def test_keys_stay_the_text_written() -> None:
    root = parse_yaml("on: 1\n2: b\nnull: c\n")
    assert isinstance(root, YamlMapping)
    assert root.to_python() == {"on": 1, "2": "b", "null": "c"}
    assert "on" in root and True not in root


def test_duplicate_keys_are_refused_with_both_lines() -> None:
    with pytest.raises(YamlError) as info:
        parse_yaml("a: 1\nb:\n  c: 1\n  c: 2\n")
    assert (info.value.line, info.value.column) == (4, 3)
    assert str(info.value) == (
        "line 4, column 3: duplicate key 'c' (first written at line 3); "
        "YAML keeps only one of them: remove or rename one"
    )


def test_merge_keys_fill_in_what_is_not_written() -> None:
    root = parse_yaml("base: &b { x: 1, y: 2 }\nuse: { <<: *b, y: 3, z: 4 }\n")
    assert isinstance(root, YamlMapping)
    assert root.to_python()["use"] == {"x": 1, "y": 3, "z": 4}


@pytest.mark.parametrize(
    ("text", "line", "column", "words"),
    [
        ("a: [1,\n", 2, 1, "expected the node content"),
        ("a: b: c\n", 1, 5, "mapping values are not allowed here"),
        ("a: 1\n---\nb: 2\n", 2, 1, "expected a single document"),
        ("a: \x01\n", 1, 4, "character U+0001 is not allowed"),
        ("a: !thing {}\n", 1, 4, "unsupported tag '!thing'"),
        ("? [a]\n: 1\n", 1, 3, "a mapping key must be a plain value"),
        ("a: &x [*x]\n", 1, 4, "recursive alias"),
        ("a: { <<: 1 }\n", 1, 10, "a merge key (<<) takes a mapping"),
        ("a: !!int\n", 1, 4, "reads as a int but is not a valid one"),
    ],
)
def test_errors_carry_line_and_column(text: str, line: int, column: int, words: str) -> None:
    with pytest.raises(YamlError) as info:
        parse_yaml(text)
    assert (info.value.line, info.value.column) == (line, column)
    assert words in info.value.message


@pytest.mark.parametrize("text", ["", "# just a comment\n"])
def test_no_document_is_none(text: str) -> None:
    assert parse_yaml(text) is None


def test_kind_names_describe_nodes_for_messages() -> None:
    root = parse_yaml("[{}, [], x, 1, 1.5, true, null, 2026-01-31, 2026-01-31T12:00:00Z]\n")
    assert isinstance(root, YamlSequence)
    assert [kind_name(n) for n in root] == [
        "a mapping", "a list", "a string", "an integer", "a number", "a boolean", "null",
        "a date", "a timestamp",
    ]  # fmt: skip


_plain = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=10,
)


@given(_plain)
def test_documents_read_like_safe_load(value: object) -> None:
    text = yaml.safe_dump(value)
    root = parse_yaml(text)
    assert root is not None
    assert root.to_python() == yaml.safe_load(text)


# libyaml reads the text when PyYAML has it; the pure-Python reader must give the very same
# located nodes (values, tags, styles, lines and columns), or refuse where libyaml refuses.
def _pure(text: str) -> YamlNode | None:
    loader = yaml_lines._DepthLimitedLoader(text)
    try:
        root = loader.get_single_node()
    finally:
        loader.dispose()
    return None if root is None else yaml_lines._Converter(loader, text).convert(root)


def _fast(text: str) -> YamlNode | str | None:
    """The located nodes through libyaml, or "pure" when the text is left to the pure reader."""
    composed = yaml_lines._fast_compose(text)
    if composed is None:
        return "pure"
    root, loader = composed
    return None if root is None else yaml_lines._Converter(loader, text).convert(root)


_libyaml = pytest.mark.skipif(not yaml.__with_libyaml__, reason="PyYAML was built without libyaml")
_rich_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.dates()
    | st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=12)
    | st.sampled_from(["a\nb\n", "line one\n  indented\n", "é\nü", "yes", "~", "0x1F", "1_000", "  x  "])
)
_documents = st.recursive(
    _rich_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=12,
)


@_libyaml
@given(
    _documents,
    st.sampled_from([None, False, True]),
    st.sampled_from([None, '"', "'", "|"]),
    st.booleans(),
)
def test_libyaml_and_the_pure_reader_locate_alike(
    value: object, flow: bool | None, style: str | None, unicode: bool
) -> None:
    text = yaml.safe_dump(value, default_flow_style=flow, default_style=style, allow_unicode=unicode)
    fast = _fast(text)
    assert fast == "pure" or fast == _pure(text)


@_libyaml
@pytest.mark.parametrize(
    "text",
    [
        TEXT,
        "naïve: café\nrule: |\n    ünïcode\n  # comment\nnext: >-\n  folded\n  text\n",
        "a: 1\r\nb:\r\n  - x\r\n  - 'y'\r\n",
        "base: &b { x: 1, y: 2 }\nuse: { <<: *b, y: 3, z: 4 }\nlist: [*b, *b]\n",
        't: 2026-01-31T12:00:00Z\nf: 1.5e3\nh: 0x1F\nq: "a\\tb"\n',
        "- - - deep\n    - x\n- {a: [1, {b: c}]}\n",
        "on: yes\nnull: ~\n2: '2'\n",
    ],
)
def test_libyaml_reads_hand_written_files_like_the_pure_reader(text: str) -> None:
    assert _fast(text) == _pure(text)


@_libyaml
@pytest.mark.parametrize(
    "text",
    [
        "a: [1,\n",  # libyaml refuses it too: the pure reader words the error
        "a: \x01\n",  # a character PyYAML's reader refuses
        "a:\tb\n",  # libyaml takes a tab between tokens, PyYAML does not
        "a: @b\n",  # nor a plain value starting with a reserved indicator
        "a: { b?c: 1 }\n",  # nor a ? inside a plain value of a flow mapping
        "a: |#x\n  b\n",  # nor a comment right after |
        "a:\nb: 1\n",  # an empty value: libyaml locates it elsewhere
        "a: !!str 1\n",  # explicit tags resolve as PyYAML resolves them
        "\ufeffa: 1\n",
        "a: 1\u2028b: 2\n",  # the Unicode line breaks
    ],
)
def test_text_the_readers_read_differently_is_left_to_the_pure_reader(text: str) -> None:
    assert yaml_lines._fast_compose(text) is None
    assert yaml_lines._fast_compose(text.encode("utf-8")) is None


@_libyaml
def test_libyaml_keeps_the_depth_limit() -> None:
    with pytest.raises(YamlError, match="nested more than 100 levels"):
        yaml_lines._fast_compose("[" * 200 + "]" * 200)
    with pytest.raises(YamlError, match="nested more than 100 levels"):
        parse_yaml("a:\n" + "".join("  " * i + "- \n" for i in range(1, 150)) + "  " * 150 + "x\n")


@_libyaml
def test_libyaml_reads_the_schemas_the_project_ships() -> None:
    for text in (TEXT, "version: 1\ncollections:\n  posts:\n    fields: { id: { type: uuid } }\n"):
        assert yaml_lines._fast_compose(text) is not None
