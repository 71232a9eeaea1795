"""Waiting for a condition that lives outside the test (in Redis, MySQL, a process): polling,
with a deadline. ``wait_until`` in a Trio test, ``wait_for`` where no Trio run is going."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import trio


async def wait_until(
    predicate: Callable[[], object], timeout_s: float = 30.0, what: str = "condition"
) -> None:
    """Poll ``predicate()`` every 20 ms until true; fail the test after ``timeout_s``."""
    with trio.move_on_after(timeout_s):
        # Polling is the honest way here: the state lives in Redis and MySQL, not in an Event.
        while not predicate():  # noqa: ASYNC110
            await trio.sleep(0.02)
        return
    pytest.fail(f"timed out after {timeout_s}s waiting for {what}")


def wait_for(predicate: Callable[[], object], what: str, timeout_s: float = 60.0) -> None:
    """Poll ``predicate()`` every 100 ms, blocking, until true; RuntimeError after ``timeout_s``
    (for fixtures that start servers, outside any Trio run)."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.1)
