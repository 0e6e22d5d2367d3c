"""Read the values a user gave, each with where it came from: alyx.yaml (with line and
column, after `${VAR}` substitution), `ALYX_*` environment variables, and overrides
(command-line flags). Nothing is converted here; `alyx_server.config.values` does that.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from alyx_server.config.registry import (
    CLIENT_SECTIONS,
    CLIENT_VARIABLES,
    KEYS_BY_ENV,
    KEYS_BY_PATH,
    SECTIONS,
    STRUCTURED_KEYS,
    Key,
    KeyType,
)
from alyx_server.config.values import RawValue, Scalar, describe, from_python
from alyx_server.errors import ConfigError, Location
from alyx_server.tools.envsubst import substitute
from alyx_server.tools.suggest import did_you_mean
from alyx_server.tools.yaml_lines import YamlError, compose_yaml

__all__ = ["Given", "read_environment", "read_file", "read_overrides"]

_VERBATIM_ENV_TYPES = frozenset(
    {KeyType.STR, KeyType.SECRET, KeyType.PATH, KeyType.ENUM, KeyType.DURATION, KeyType.SIZE,
     KeyType.RATE}
)  # fmt: skip
_KNOWN_PATHS = (*KEYS_BY_PATH, *SECTIONS, *STRUCTURED_KEYS)


@dataclass(frozen=True, slots=True)
class Given:
    """One value the user gave for a key; `raw` None means 'use the default'."""

    key: Key
    raw: RawValue | None
    location: Location


def read_file(path: Path, display: str, environ: Mapping[str, str]) -> list[Given]:
    """Read alyx.yaml; a missing or empty file gives nothing. ConfigError for anything bad."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as e:
        raise ConfigError(f"cannot read the file: {e.strerror}", Location(display)) from e
    try:
        root = compose_yaml(data)
    except YamlError as e:
        where = Location(display, e.line, e.column) if e.line else Location(display)
        raise ConfigError(f"invalid YAML: {e.message}", where) from e
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = Location(display, mark.line + 1, mark.column + 1) if mark else Location(display)
        context = e.context
        if context and e.context_mark and e.context_mark is not mark:
            context += f" started on line {e.context_mark.line + 1}"
        raise ConfigError(f"invalid YAML: {e.problem or e.context}", where, hint=context) from e
    except yaml.reader.ReaderError as e:
        if e.encoding != "unicode":
            problem, hint = "is not UTF-8 text", "save it as UTF-8"
        else:
            problem, hint = "holds a control character", "remove it or write it as an escape in quotes"
        message = f"the file {problem} (character {e.position})"
        raise ConfigError(message, Location(display), hint=hint) from e
    except yaml.YAMLError as e:
        raise ConfigError(f"invalid YAML: {e}", Location(display)) from e
    if root is None or (isinstance(root, ScalarNode) and root.tag.endswith(":null")):
        return []
    if not isinstance(root, MappingNode):
        raise ConfigError(
            f"the top level must be a mapping of keys, got {_kind(root)}",
            _at(display, root),
            hint="e.g. `server: {port: 8090}`",
        )
    return list(_FileReader(display, environ).walk(root, ""))


def read_environment(environ: Mapping[str, str]) -> list[Given]:
    """Read every `ALYX_*` variable; an unknown one is a ConfigError with 'did you mean'."""
    found: list[Given] = []
    for name in sorted(environ):
        if not name.startswith("ALYX_") or name in CLIENT_VARIABLES:
            continue
        key = KEYS_BY_ENV.get(name)
        if key is None:
            hint = did_you_mean(name, [*KEYS_BY_ENV, *CLIENT_VARIABLES]) or (
                "see docs/configuration.md for the variables Alyx reads"
            )
            raise ConfigError("unknown environment variable", Location(name), hint=hint)
        location = Location(name, path=key.path)
        found.append(Given(key, _env_value(key, environ[name], location), location))
    return found


def read_overrides(overrides: Mapping[str, object], origin: str) -> list[Given]:
    """Read Python values by dotted key (e.g. from command-line flags)."""
    found: list[Given] = []
    for path, value in overrides.items():
        key = KEYS_BY_PATH.get(path)
        if key is None:
            hint = did_you_mean(path, KEYS_BY_PATH)
            raise ConfigError("unknown key", Location(origin, path=path), hint=hint)
        found.append(Given(key, None if value is None else from_python(value), Location(origin, path=path)))
    return found


def _env_value(key: Key, text: str, location: Location) -> RawValue | None:
    if text == "":
        return None
    if key.type in _VERBATIM_ENV_TYPES:
        # Taken as is, so secrets with YAML-special characters (# : * &) need no quoting.
        return Scalar(text, plain=False)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        raise ConfigError(f"not a YAML value: {e}", location) from e
    if isinstance(node, ScalarNode):
        return Scalar(node.value, plain=node.style is None)
    if isinstance(node, SequenceNode) and all(isinstance(n, ScalarNode) for n in node.value):
        return tuple(Scalar(n.value, plain=n.style is None) for n in node.value)
    raise ConfigError(f"expected {describe(key)}, got {_kind(node)}", location)


def _at(display: str, node: Node, path: str | None = None) -> Location:
    mark = node.start_mark
    return Location(display, mark.line + 1, mark.column + 1, path)


def _kind(node: Node | None) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    return f"{node.value!r}" if isinstance(node, ScalarNode) else "nothing"


class _FileReader:
    """Walks the YAML tree keeping file positions for every key and value."""

    def __init__(self, display: str, environ: Mapping[str, str]) -> None:
        self.display = display
        self.environ = environ
        self.seen: dict[str, int] = {}

    def walk(self, mapping: MappingNode, prefix: str) -> Iterator[Given]:
        for key_node, value_node in mapping.value:
            path = prefix + self._name(key_node, prefix)
            if path in self.seen:
                raise ConfigError(
                    f"duplicate key (first set on line {self.seen[path]})",
                    _at(self.display, key_node, path),
                )
            self.seen[path] = key_node.start_mark.line + 1
            key = KEYS_BY_PATH.get(path)
            if key is not None:
                yield Given(key, self._raw(key, value_node, path), _at(self.display, value_node, path))
            elif path in CLIENT_SECTIONS:
                continue  # read by the CLI (alyx deploy), which checks it; not a setting
            elif path in STRUCTURED_KEYS:
                continue  # a list of mappings, read by its own parser (config/webhooks.py)
            elif path in SECTIONS:
                yield from self._section(value_node, path)
            else:
                hint = did_you_mean(path, _KNOWN_PATHS) or "see docs/configuration.md"
                raise ConfigError("unknown key", _at(self.display, key_node, path), hint=hint)

    def _name(self, node: Node, prefix: str) -> str:
        if isinstance(node, ScalarNode) and node.value:
            return str(node.value)
        where = _at(self.display, node, prefix.rstrip(".") or None)
        raise ConfigError(f"keys must be plain names, got {_kind(node)}", where)

    def _section(self, node: Node, path: str) -> Iterator[Given]:
        if isinstance(node, MappingNode):
            yield from self.walk(node, path + ".")
        elif not (isinstance(node, ScalarNode) and node.tag.endswith(":null")):
            raise ConfigError(
                f"expected a mapping of {path}.* keys, got {_kind(node)}",
                _at(self.display, node, path),
            )

    def _raw(self, key: Key, node: Node, path: str) -> RawValue | None:
        if isinstance(node, ScalarNode):
            return Scalar(self._text(node, path), plain=node.style is None)
        if isinstance(node, SequenceNode):
            for item in node.value:
                if not isinstance(item, ScalarNode):
                    raise ConfigError(
                        f"list items must be single values, got {_kind(item)}",
                        _at(self.display, item, path),
                    )
            return tuple(Scalar(self._text(item, path), plain=item.style is None) for item in node.value)
        raise ConfigError(f"expected {describe(key)}, got {_kind(node)}", _at(self.display, node, path))

    def _text(self, node: ScalarNode, path: str) -> str:
        try:
            return substitute(str(node.value), self.environ)
        except ValueError as e:
            raise ConfigError(str(e), _at(self.display, node, path)) from e
