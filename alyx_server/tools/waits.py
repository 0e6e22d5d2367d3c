"""Waiting for an asyncio.Event with a time limit, in loops that are cancelled to stop.

`wait_event` is what background loops (jobs, webhooks, hooks) sleep on between passes.
Not `asyncio.wait_for`: on Python 3.11 it swallows a cancellation that arrives while the
event is being set (it returns instead of raising CancelledError), so a `while True` loop
around it goes on, and whoever cancelled the task and awaits it waits forever.
`asyncio.timeout` lets the cancellation through.
"""

from __future__ import annotations

import asyncio

__all__ = ["wait_event"]


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait until `event` is set or `timeout` seconds pass; True when it was set."""
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False
    return True
