"""The one hop from Trio into the asyncio libraries (redis-py, asyncmy).

Both client libraries are asyncio-only; they run on the single trio-asyncio loop that
``service.run`` (or an operator command) opens. Every call goes through ``aio``; each store's
boundary maps what comes back to the domain's errors (``trio_worker.errors``).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

import trio
import trio_asyncio
from sniffio import thread_local as sniffio_library

P = ParamSpec("P")
T = TypeVar("T")


async def aio(fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Await an asyncio coroutine function from Trio."""
    result: T = await trio_asyncio.aio_as_trio(fn)(*args, **kwargs)
    return result


def describe(exc: BaseException) -> str:
    """A short, secret-free reason for a store error ("connection refused", "timed out")."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    cause = exc.__cause__ or exc.__context__
    if cause is not None and cause is not exc and isinstance(cause, OSError):
        return describe(cause)
    if len(exc.args) == 2 and isinstance(exc.args[0], int) and isinstance(exc.args[1], str):
        text = exc.args[1].strip()  # a driver's (code, message): the code is reported apart
    else:
        text = str(exc).strip() or type(exc).__name__
    lowered = text.lower()
    if "refused" in lowered:
        return "connection refused"
    if "timeout" in lowered or "timed out" in lowered:
        return "timed out"
    return text.splitlines()[0][:200]


# trio-asyncio runs one asyncio callback per Trio scheduling round. A round trip on either
# client is a chain of callbacks each scheduled by the one before (the socket's data arrives,
# the reader wakes its task, the task's future resolves, the hop's waiter is told): one round
# each, 18 a batch, which cost a fifth of the worker's CPU. asyncio's own loop runs every
# callback that is ready in one iteration; this does the same, a bounded number at a time.
_BURST = 32
_main_loop_one = trio_asyncio.TrioEventLoop._main_loop_one


async def _main_loop_burst(self: trio_asyncio.TrioEventLoop, no_wait: bool = False) -> None:
    await _main_loop_one(self, no_wait)
    if no_wait:
        return
    for _ in range(_BURST):
        try:
            await _main_loop_one(self, True)
        except trio.WouldBlock:
            return


# And when a socket is readable, trio-asyncio runs the reader (the transport reads, the protocol
# resolves a future) in a task of its own, hands what that scheduled to the loop's task, and
# waits for the loop to have run it: three Trio steps for every read, three reads for every
# commit. When nothing else is pending, the callbacks the reader scheduled run right there, in
# order, as asyncio's own loop would run them in the same iteration: one step. When something
# is pending (the loop's task has callbacks in hand or queued), it goes the usual way, so no
# callback ever runs before one scheduled earlier. Timers and Trio-side handles always go the
# usual way; past ``_BURST`` callbacks, the rest go to the loop's task, in order.
_queue_handle = trio_asyncio.TrioEventLoop._queue_handle
_inline: dict[int, deque[asyncio.Handle]] = {}  # the loop (id) whose reader runs its callbacks


def _queue_handle_inline(self: trio_asyncio.TrioEventLoop, handle: asyncio.Handle) -> Any:
    pending = _inline.get(id(self))
    if pending is None or type(handle) is not asyncio.Handle:
        return _queue_handle(self, handle)
    self._check_closed()
    pending.append(handle)
    return handle


def _run_reader(self: trio_asyncio.TrioEventLoop, reader: asyncio.Handle) -> bool:
    """Run ``reader``, and what it scheduled if nothing else is pending. Returns whether
    callbacks were left to the loop's task (the caller then waits for them)."""
    queue = self._q_recv.statistics()
    if queue.current_buffer_used or not queue.tasks_waiting_receive:
        reader._run()
        return True
    pending = _inline[id(self)] = deque()
    try:
        reader._run()
        ran = 0
        while pending and ran < _BURST:
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
    return bool(pending)


async def _io_task(
    self: trio_asyncio.TrioEventLoop,
    fd: int,
    handle: Any,
    wait_ready: Callable[[int], Awaitable[None]],
) -> None:
    # trio_asyncio._base.BaseTrioEventLoop._io_task (0.15-0.16), its reader run by _run_reader
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
                if _run_reader(self, handle):
                    await self.synchronize()
        except Exception as exc:
            handle._raise(exc)


trio_asyncio.TrioEventLoop._main_loop_one = _main_loop_burst
trio_asyncio.TrioEventLoop._queue_handle = _queue_handle_inline
trio_asyncio.TrioEventLoop._io_task = _io_task
