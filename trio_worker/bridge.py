"""The one hop from Trio into the asyncio libraries (redis-py, asyncmy).

Both client libraries are asyncio-only; they run on the single trio-asyncio loop that
``service.run`` (or an operator command) opens. Every call goes through ``aio``; each store's
boundary maps what comes back to the domain's errors (``trio_worker.errors``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

import trio
import trio_asyncio

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


trio_asyncio.TrioEventLoop._main_loop_one = _main_loop_burst
