"""Periodic work on a deadline, so that the period doesn't drift with the work's own time
(trio-util's ``periodic``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import trio


async def every(period_s: float, done: trio.Event) -> AsyncIterator[None]:
    """Yield now, then once per ``period_s`` (measured from the last deadline, or from now if
    the work overran it), until ``done`` is set; ``done`` ends the wait at once."""
    deadline = trio.current_time()
    while not done.is_set():
        yield
        deadline = max(deadline + period_s, trio.current_time())
        with trio.move_on_at(deadline):
            await done.wait()
