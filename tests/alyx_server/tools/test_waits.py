"""wait_event: set, timed out, and cancelled while the event is being set."""

from __future__ import annotations

import asyncio

import pytest

from alyx_server.tools.waits import wait_event


async def test_set_and_timed_out() -> None:
    event = asyncio.Event()
    assert await wait_event(event, 0.01) is False
    event.set()
    assert await wait_event(event, 10) is True


async def test_a_cancellation_while_the_event_is_set_stops_the_loop() -> None:
    """The background loops' shape: the task is cancelled in the same turn as the event is
    set; the loop must end (asyncio.wait_for on 3.11 returns instead, and it never would)."""
    event = asyncio.Event()
    passes = 0

    async def loop() -> None:
        nonlocal passes
        while True:
            passes += 1
            event.clear()
            await wait_event(event, 10)

    task = asyncio.get_running_loop().create_task(loop())
    await asyncio.sleep(0)  # the loop is waiting on the event
    event.set()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert passes == 1
