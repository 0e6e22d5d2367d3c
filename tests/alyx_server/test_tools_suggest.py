"""'Did you mean' suggestions."""

from __future__ import annotations

from alyx_server.tools.suggest import closest, did_you_mean

NAMES = ["server.port", "server.host", "database.path"]


def test_the_closest_name_is_suggested() -> None:
    assert closest("server.prot", NAMES) == "server.port"
    assert closest("SERVER.HOST", NAMES) == "server.host"
    assert did_you_mean("databse.path", NAMES) == "did you mean database.path?"


def test_nothing_is_suggested_when_nothing_is_close() -> None:
    assert closest("zzz", NAMES) is None
    assert did_you_mean("zzz", NAMES) is None
    assert closest("x", []) is None
