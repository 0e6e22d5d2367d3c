"""The bundle's alyx.yaml keys in a plan: read against the settings in force, again
whenever those settings, the keys or the server's alyx.yaml on disk differ from the last
plan's (a project's deploys send the same keys, so the last reading is kept)."""

from __future__ import annotations

from pathlib import Path

import pytest

from alyx_server.config.loader import load_settings
from alyx_server.deploy.plan import _config_changes
from alyx_server.errors import ValidationError

SERVER_CONFIG = "auth:\n  allow_registration: true\n"
BUNDLE = {"auth.allow_registration": False, "realtime.send_queue": 500}


def _server(tmp_path: Path, text: str = SERVER_CONFIG) -> Path:
    project = tmp_path / "server"
    project.mkdir(exist_ok=True)
    (project / "alyx.yaml").write_text(text, encoding="utf-8")
    return project


def test_the_same_keys_planned_twice_read_alike(tmp_path: Path) -> None:
    settings = load_settings(_server(tmp_path), mode="production")
    first = _config_changes(settings, BUNDLE)
    second = _config_changes(settings, BUNDLE)
    assert first == second
    assert [c["key"] for c in first[0]] == ["auth.allow_registration", "realtime.send_queue"]
    assert first[1] == {"auth.allow_registration": False, "realtime.send_queue": 500}


def test_other_keys_are_read_again(tmp_path: Path) -> None:
    settings = load_settings(_server(tmp_path), mode="production")
    _config_changes(settings, BUNDLE)
    changes, values = _config_changes(settings, {"auth.allow_registration": True})
    assert changes == []
    assert values == {"auth.allow_registration": True}


def test_an_edited_alyx_yaml_on_the_server_is_read_again(tmp_path: Path) -> None:
    project = _server(tmp_path)
    settings = load_settings(project, mode="production")
    assert _config_changes(settings, BUNDLE)[0]
    (project / "alyx.yaml").write_text(SERVER_CONFIG + "server:\n  port: not-a-port\n", encoding="utf-8")
    with pytest.raises(ValidationError, match=r"server\.port"):
        _config_changes(settings, BUNDLE)


def test_new_settings_are_read_against(tmp_path: Path) -> None:
    project = _server(tmp_path)
    before = load_settings(project, mode="production")
    _config_changes(before, BUNDLE)
    after = load_settings(project, mode="production", overrides={"auth.allow_registration": False})
    changes, _ = _config_changes(after, BUNDLE)
    assert [c["key"] for c in changes] == ["realtime.send_queue"]


def test_a_bad_value_is_refused_every_time(tmp_path: Path) -> None:
    settings = load_settings(_server(tmp_path), mode="production")
    for _ in range(2):
        with pytest.raises(ValidationError, match="invalid bundle") as info:
            _config_changes(settings, {"realtime.send_queue": "many"})
        assert info.value.code == "INVALID_BUNDLE"
