"""`webhooks.targets` in alyx.yaml: the webhooks a project declares (a list of mappings,
which the flat key registry does not hold, so it is read here, with file positions).

    webhooks:
      targets:
        - name: crm                       a lower-case name, unique
          url: https://crm.example.com/hooks/alyx
          secret: ${CRM_WEBHOOK_SECRET}   whsec_ + base64 of 24 to 64 random bytes
          events:
            - collection: posts
              events: [create, update]    default: create, update, delete
              when: "doc.published"       optional CEL over doc (null on delete)

`${VAR}` is substituted in every string, as in the rest of alyx.yaml. Each problem is one
ConfigError naming the file, line and key. The `when` expressions are compiled when the
server starts (alyx_server/webhooks), with these positions in their messages.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from alyx_server.errors import ConfigError, Location
from alyx_server.tools.envsubst import substitute
from alyx_server.tools.yaml_lines import YamlError, compose_yaml

__all__ = [
    "EVENT_TYPES",
    "SECRET_HINT",
    "SECRET_PATTERN",
    "URL_PATTERN",
    "WebhookEvents",
    "WebhookTarget",
    "check_secret",
    "check_url",
    "read_webhook_targets",
]

EVENT_TYPES = ("create", "update", "delete")
NAME = re.compile(r"[a-z][a-z0-9_-]{0,62}")
SECRET_HINT = (
    "write whsec_ and the base64 of 24 to 64 random bytes; generate one with: python -c "
    "\"import base64, secrets; print('whsec_' + base64.b64encode(secrets.token_bytes(32)).decode())\""
)
_TARGET_KEYS = ("name", "url", "secret", "events")
_EVENT_KEYS = ("collection", "events", "when")


@dataclass(frozen=True, slots=True)
class WebhookEvents:
    """The events of one collection a webhook receives, and an optional CEL condition."""

    collection: str
    events: tuple[str, ...] = EVENT_TYPES
    when: str | None = None
    when_location: Location | None = None


@dataclass(frozen=True, slots=True)
class WebhookTarget:
    name: str
    url: str
    secret: str = field(repr=False)
    events: tuple[WebhookEvents, ...]
    location: Location | None = None


# An http(s) URL with a host name or an IPv4 address, in printable ASCII: what check_url
# takes, and what the OpenAPI document states (both read it alike: no \s, no \d).
URL_PATTERN = (
    r"^[Hh][Tt][Tt][Pp][Ss]?://"
    r"(?:[A-Za-z0-9._~%!$&'()*+,;=:-]*@)?"  # user:password@
    r"[A-Za-z0-9._~%!$&'()*+,;=-]+"  # the host
    r"(?::[0-9]{0,5})?"
    r"(?:[/?#][!-~]*)?$"
)
_URL = re.compile(URL_PATTERN)


def check_url(url: str) -> str | None:
    """None when `url` is an http(s) URL with a host; else the problem."""
    if not _URL.fullmatch(url) or not urlsplit(url).hostname:
        return f"{url!r} is not an http or https URL (write e.g. https://example.com/hooks/alyx)"
    return None


_B64 = "[A-Za-z0-9+/]"
# whsec_ and the padded base64 of 24 to 64 bytes: what check_secret takes.
SECRET_PATTERN = (
    rf"^whsec_(?:(?:{_B64}{{4}}){{8,20}}(?:{_B64}{{2}}==|{_B64}{{3}}=)?"
    rf"|(?:{_B64}{{4}}){{21}}(?:{_B64}{{2}}==)?)$"
)


def check_secret(secret: str) -> str | None:
    """None when `secret` follows the whsec_ convention; else the problem."""
    if not secret.startswith("whsec_"):
        return "a webhook secret starts with whsec_"
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        return "the part after whsec_ is not base64"
    if not 24 <= len(key) <= 64:
        return f"the secret holds {len(key)} bytes; use 24 to 64"
    return None


def read_webhook_targets(path: Path, display: str, environ: Mapping[str, str]) -> tuple[WebhookTarget, ...]:
    """The `webhooks.targets` of alyx.yaml (none when the file or the key is missing)."""
    try:
        root = compose_yaml(path.read_bytes())
    except FileNotFoundError:
        return ()
    except (OSError, YamlError, ValueError) as e:
        # read_file reports an unreadable or invalid file first, with its position.
        raise ConfigError(f"cannot read the file: {e}", Location(display)) from e
    node = _targets_node(root)
    if node is None:
        return ()
    reader = _Reader(display, environ)
    if not isinstance(node, SequenceNode):
        raise ConfigError("webhooks.targets must be a list of webhooks", reader.at(node, "webhooks.targets"),
                          hint="write `- name: crm` items with url, secret and events")  # fmt: skip
    targets = [reader.target(item, f"webhooks.targets[{i}]") for i, item in enumerate(node.value)]
    seen: dict[str, WebhookTarget] = {}
    for target in targets:
        if target.name in seen:
            raise ConfigError(f"two webhooks are named {target.name!r}", target.location, hint="rename one")
        seen[target.name] = target
    return tuple(targets)


def _targets_node(root: Node | None) -> Node | None:
    if not isinstance(root, MappingNode):
        return None
    pairs: list[tuple[Node, Node]] = root.value
    for key, value in pairs:
        if isinstance(key, ScalarNode) and key.value == "webhooks.targets":
            return value
        if isinstance(key, ScalarNode) and key.value == "webhooks" and isinstance(value, MappingNode):
            inner: list[tuple[Node, Node]] = value.value
            for inner_key, node in inner:
                if isinstance(inner_key, ScalarNode) and inner_key.value == "targets":
                    return node
    return None


class _Reader:
    def __init__(self, display: str, environ: Mapping[str, str]) -> None:
        self.display = display
        self.environ = environ

    def at(self, node: Node, path: str) -> Location:
        return Location(self.display, node.start_mark.line + 1, node.start_mark.column + 1, path)

    def mapping(self, node: Node, path: str, keys: tuple[str, ...]) -> dict[str, Node]:
        if not isinstance(node, MappingNode):
            raise ConfigError(
                f"{path} must be a mapping", self.at(node, path), hint=f"with keys {', '.join(keys)}"
            )
        out: dict[str, Node] = {}
        for key, value in node.value:
            name = key.value if isinstance(key, ScalarNode) else None
            if name not in keys:
                raise ConfigError(f"unknown key {name!r} in {path}", self.at(key, path),
                                  hint=f"the keys are: {', '.join(keys)}")  # fmt: skip
            out[str(name)] = value
        return out

    def text(self, node: Node | None, path: str, parent: Node) -> str:
        if node is None:
            raise ConfigError(f"{path} is required", self.at(parent, path))
        if not isinstance(node, ScalarNode) or not str(node.value).strip():
            raise ConfigError(f"{path} must be a non-empty string", self.at(node, path))
        try:
            return substitute(str(node.value), self.environ)
        except ValueError as e:
            raise ConfigError(str(e), self.at(node, path)) from e

    def target(self, node: Node, path: str) -> WebhookTarget:
        body = self.mapping(node, path, _TARGET_KEYS)
        name = self.text(body.get("name"), f"{path}.name", node)
        if not NAME.fullmatch(name):
            raise ConfigError(f"{name!r} is not a webhook name", self.at(body["name"], f"{path}.name"),
                              hint="a lower-case letter, then letters, digits, _ or -")  # fmt: skip
        url = self.text(body.get("url"), f"{path}.url", node)
        if problem := check_url(url):
            raise ConfigError(problem, self.at(body["url"], f"{path}.url"))
        secret = self.text(body.get("secret"), f"{path}.secret", node)
        if problem := check_secret(secret):
            raise ConfigError(problem, self.at(body["secret"], f"{path}.secret"), hint=SECRET_HINT)
        events_node = body.get("events")
        if not isinstance(events_node, SequenceNode) or not events_node.value:
            where = self.at(events_node if events_node is not None else node, f"{path}.events")
            raise ConfigError(f"{path}.events must be a list of {{collection, events, when}}", where,
                              hint="e.g. events: [{collection: posts, events: [create]}]")  # fmt: skip
        events = tuple(self.events(item, f"{path}.events[{i}]") for i, item in enumerate(events_node.value))
        return WebhookTarget(name, url, secret, events, self.at(node, path))

    def events(self, node: Node, path: str) -> WebhookEvents:
        body = self.mapping(node, path, _EVENT_KEYS)
        collection = self.text(body.get("collection"), f"{path}.collection", node)
        kinds: tuple[str, ...] = EVENT_TYPES
        listed = body.get("events")
        if listed is not None:
            if not isinstance(listed, SequenceNode) or not listed.value:
                raise ConfigError(
                    f"{path}.events must be a list such as [create, update]", self.at(listed, path)
                )
            kinds = tuple(self.text(item, f"{path}.events", listed) for item in listed.value)
            for kind, item in zip(kinds, listed.value, strict=True):
                if kind not in EVENT_TYPES:
                    raise ConfigError(f"unknown event {kind!r}", self.at(item, f"{path}.events"),
                                      hint=f"events are: {', '.join(EVENT_TYPES)}")  # fmt: skip
        when_node = body.get("when")
        when = self.text(when_node, f"{path}.when", node) if when_node is not None else None
        where = self.at(when_node, f"{path}.when") if when_node is not None else None
        return WebhookEvents(collection, kinds, when, where)
