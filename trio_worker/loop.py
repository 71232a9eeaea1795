"""trio-asyncio's loop, run in fewer Trio steps.

redis-py and asyncmy run on trio-asyncio's loop, which runs asyncio's callbacks in a Trio task
of its own, one per Trio scheduling round, and each socket's reader in another task, which
hands what the reader scheduled to the loop's task and waits for it there. A round trip on
either client is a chain of callbacks, each scheduled by the one before (the call's first step
sends, the reader reads, the reply's future resolves, the waiting task steps, the caller is
told), so every link cost a round. Three changes, each keeping asyncio's order (no callback
runs before one scheduled earlier), bring it closer to asyncio's own loop, which runs every
ready callback in one iteration:

- ``bursts``: the loop's task runs up to ``BURST`` + 1 ready callbacks per round;
- readers: when nothing else is pending, the callbacks a reader scheduled run right after it,
  in the reader's task;
- ``start``: when nothing else is pending, an asyncio call made from Trio takes its first step
  right away, in the caller's task;
- ``call_soon`` checks its callback only in debug mode, as asyncio's own loop does (the check,
  inspect's coroutine tests, cost more than scheduling the callback).

"Nothing else is pending": the loop's task waits, empty-handed, on an empty queue. Otherwise a
callback goes the usual way. Timers and Trio-side handles always do; past ``BURST`` callbacks,
the rest go to the loop's task, in order. The figures are in docs/benchmarks.md.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import trio
import trio_asyncio
from sniffio import thread_local as sniffio_library

T = TypeVar("T")
Loop = trio_asyncio.TrioEventLoop  # untyped: its instances are Any below

BURST = 32

# trio-asyncio 0.15-0.16's own methods, which these wrap or replace.
_main_loop_one = Loop._main_loop_one
_queue_handle = Loop._queue_handle

# The loops (by id) running callbacks inline now, and the callbacks scheduled meanwhile.
_inline: dict[int, deque[asyncio.Handle]] = {}


async def _main_loop_bursts(self: Any, no_wait: bool = False) -> None:
    await _main_loop_one(self, no_wait)
    if no_wait:
        return
    for _ in range(BURST):
        try:
            await _main_loop_one(self, True)
        except trio.WouldBlock:
            return


def _call_soon(self: Any, callback: Callable[..., object], *args: Any, **context: Any) -> Any:
    if self._debug:
        self._check_callback(callback, "call_soon")
    return self._queue_handle(asyncio.Handle(callback, args, self, **context))


def _queue_handle_inline(self: Any, handle: asyncio.Handle) -> Any:
    pending = _inline.get(id(self))
    if pending is None or type(handle) is not asyncio.Handle:
        return _queue_handle(self, handle)
    self._check_closed()
    pending.append(handle)
    return handle


def _inline_then(self: Any, first: Callable[[], T]) -> tuple[T, bool]:
    """``first()``, then the callbacks it scheduled, here, if nothing else is pending. Returns
    what ``first`` returned, and whether callbacks were left to the loop's task."""
    # The loop's queue (a trio memory channel) read directly: statistics() builds an object.
    queue = self._q_recv._state
    if queue.data or not queue.receive_tasks:
        return first(), True
    pending = _inline[id(self)] = deque()
    try:
        result = first()
        ran = 0
        while pending and ran < BURST:
            handle = pending.popleft()
            if handle._cancelled:
                continue
            ran += 1
            library, sniffio_library.name = sniffio_library.name, "asyncio"
            try:
                handle._run()
            finally:
                sniffio_library.name = library
    finally:
        del _inline[id(self)]
    for handle in pending:
        _queue_handle(self, handle)
    return result, bool(pending)


def start(self: Any, coro: Coroutine[Any, Any, T]) -> asyncio.Future[T]:
    """An asyncio task running ``coro`` on the loop, its first step taken now if it can be.

    The caller awaits the future (``trio_asyncio.run_aio_future``)."""
    try:
        self._check_closed()
        future, _ = _inline_then(self, lambda: asyncio.ensure_future(coro, loop=self))
    except BaseException:
        coro.close()  # never awaited
        raise
    return future


async def _io_task(
    self: Any, fd: int, handle: Any, wait_ready: Callable[[int], Awaitable[None]]
) -> None:
    # trio_asyncio's BaseTrioEventLoop._io_task, the reader run by _inline_then.
    with handle._scope:
        try:
            while not handle._cancelled:
                try:
                    await wait_ready(fd)
                except OSError:
                    if handle._cancelled:
                        break
                    raise
                if handle._cancelled:
                    break
                _, left = _inline_then(self, handle._run)
                if left:
                    await self.synchronize()
        except Exception as exc:
            handle._raise(exc)


Loop._main_loop_one = _main_loop_bursts
Loop._queue_handle = _queue_handle_inline
Loop.call_soon = _call_soon
Loop._io_task = _io_task
