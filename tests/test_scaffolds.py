"""The project templates in scaffolds/: explicit rules everywhere, complete manifests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from alyx_cli.commands.init import TEMPLATES
from alyx_server.resources import data_dir

ACTIONS = ("create", "read", "update", "delete")
# SPEC section 3 (alyx.yaml) and section 11 (function manifests).
CONFIG_SECTIONS = frozenset(
    ("server", "database", "auth", "functions", "realtime", "dev", "admin_ui", "logging")
)
MANIFEST_KEYS = frozenset(
    ("runtime", "timeout", "memory", "env", "input", "output", "rule", "network", "privileged")
)
SOURCES = {".py": "python", ".js": "node", ".mjs": "node"}


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


@pytest.mark.parametrize("template", TEMPLATES)
def test_every_collection_has_one_primary_key_and_all_four_rules(template: str) -> None:
    schema = load(data_dir("scaffolds") / template / "schema.yaml")

    assert schema["version"] == 1
    assert schema["collections"]
    for name, collection in schema["collections"].items():
        primaries = [f for f, spec in collection["fields"].items() if spec.get("primary")]
        assert len(primaries) == 1, name
        assert sorted(collection["rules"]) == sorted(ACTIONS), name
        assert all(isinstance(collection["rules"][a], str) for a in ACTIONS), name


@pytest.mark.parametrize("template", TEMPLATES)
def test_the_configuration_uses_known_sections_only(template: str) -> None:
    config = load(data_dir("scaffolds") / template / "alyx.yaml")

    assert isinstance(config, dict)
    assert set(config) <= CONFIG_SECTIONS


@pytest.mark.parametrize("template", TEMPLATES)
def test_every_function_has_a_manifest_with_an_explicit_rule(template: str) -> None:
    functions = data_dir("scaffolds") / template / "functions"
    sources = [p for p in functions.iterdir() if p.suffix in SOURCES]

    assert len(sources) == 1
    for source in sources:
        manifest = load(source.with_suffix(".yaml"))
        assert set(manifest) <= MANIFEST_KEYS
        assert manifest["runtime"] == SOURCES[source.suffix]
        assert manifest["rule"] == "auth != null"
        assert manifest["network"] is False
        assert manifest["input"] and manifest["output"]
        for field in (*manifest["input"].values(), *manifest["output"].values()):
            assert "type" in field


def test_the_blog_references_posts_and_users() -> None:
    comments = load(data_dir("scaffolds") / "blog" / "schema.yaml")["collections"]["comments"]

    assert comments["fields"]["post_id"]["references"] == "posts.id"
    assert comments["fields"]["author_id"]["references"] == "_alyx_users.id"
