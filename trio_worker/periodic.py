"""Periodic work on a deadline, so that the period doesn't drift with the work's own time
(trio-util's ``periodic``)."""

from __future__ import annotations

import trio


class Every:
    """``ticks = Every(period_s, done)``, then ``while await ticks.next(): work()``: the work
    runs now, then once per ``period_s`` (counted from the last deadline, or from now if the
    work overran it), until ``done`` is set, which ends the wait at once."""

    def __init__(self, period_s: float, done: trio.Event, *, now: bool = True) -> None:
        self._period_s = period_s
        self._done = done
        # now=False: the first run too waits a period.
        self._deadline: float | None = None if now else trio.current_time()

    async def next(self) -> bool:
        """Wait for the next run (the first: no wait); False once ``done`` is set."""
        if self._deadline is None:
            self._deadline = trio.current_time()
            await trio.lowlevel.checkpoint()
        else:
            self._deadline = max(self._deadline + self._period_s, trio.current_time())
            with trio.move_on_at(self._deadline):
                await self._done.wait()
        return not self._done.is_set()
