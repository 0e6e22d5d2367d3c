"""The garbage collector settings `serve` applies once the server listens."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from alyx_server.app import GC_THRESHOLD, tune_collector


@pytest.fixture
def restored_collector() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored_collector")
def test_start_up_objects_are_frozen_and_young_collections_are_rarer() -> None:
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)  # Python's defaults
    assert gc.get_freeze_count() == 0
    tune_collector()
    assert gc.get_threshold() == GC_THRESHOLD
    assert GC_THRESHOLD[0] > 700
    assert gc.get_freeze_count() > 1000  # the modules and objects loaded so far
