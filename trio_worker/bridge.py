"""The one hop from Trio into the asyncio libraries (redis-py, asyncmy), with errors mapped.

Both client libraries are asyncio-only; they run on the single trio-asyncio loop that
``service.run`` opens. Every call goes through ``aio`` so that a failure surfaces as one of our
domain errors (``RedisUnavailable``, ``MySQLUnavailable``) naming the address, and so that
timeouts are Trio scopes at the call site (httpcore's ``map_exceptions`` idea).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

import trio_asyncio

P = ParamSpec("P")
T = TypeVar("T")


class StoreUnavailable(Exception):
    """A store could not be reached or answered with a connection-level error."""

    def __init__(self, store: str, address: str, reason: str) -> None:
        super().__init__(f"{store} at {address}: {reason}")
        self.address = address
        self.reason = reason


class RedisUnavailable(StoreUnavailable):
    def __init__(self, address: str, reason: str) -> None:
        super().__init__("Redis", address, reason)


class MySQLUnavailable(StoreUnavailable):
    def __init__(self, address: str, reason: str) -> None:
        super().__init__("MySQL", address, reason)


async def aio(fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Await an asyncio coroutine function from Trio."""
    result: T = await trio_asyncio.aio_as_trio(fn)(*args, **kwargs)
    return result


def describe(exc: BaseException) -> str:
    """A short, secret-free reason for a connection error ("connection refused", "timed out")."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    cause = exc.__cause__ or exc.__context__
    if cause is not None and cause is not exc and isinstance(cause, OSError):
        return describe(cause)
    text = str(exc).strip() or type(exc).__name__
    lowered = text.lower()
    if "refused" in lowered:
        return "connection refused"
    if "timeout" in lowered or "timed out" in lowered:
        return "timed out"
    return text.splitlines()[0][:200]
