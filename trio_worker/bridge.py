"""The one hop from Trio into the asyncio libraries (redis-py, asyncmy).

Both client libraries are asyncio-only; they run on the single trio-asyncio loop that
``service.run`` (or an operator command) opens with ``loop.open_loop``. Every call goes through
``aio``; each store's boundary maps what comes back to the domain's errors
(``trio_worker.errors``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

import trio_asyncio

P = ParamSpec("P")
T = TypeVar("T")


async def aio(fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Await an asyncio coroutine function from Trio (``fn`` runs in an asyncio task, cancelled
    when the caller is); on a ``loop.FastLoop`` its first step is taken at once."""
    result: T = await trio_asyncio.current_loop.get().run_aio_coroutine(_call(fn, args, kwargs))
    return result


async def _call(fn: Callable[..., Awaitable[T]], args: Any, kwargs: Any) -> T:
    return await fn(*args, **kwargs)
