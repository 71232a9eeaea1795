"""The Redis error boundary: every call to redis-py goes through ``Boundary.call``.

What Redis or the connection says is mapped to the domain here, once (httpcore's
``map_exceptions`` idea): a connection that failed or timed out, and the server's "not now"
replies (a read-only replica, loading, out of memory, a busy script, a refused right, a key of
the wrong type an operator created), become ``RedisUnavailable``: retried with backoff, 503
meanwhile. Any other error is a bug (ours or a script's) and propagates as itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ParamSpec, TypeVar

import redis.asyncio as aredis
import redis.exceptions as rex

from trio_worker.bridge import aio, describe
from trio_worker.errors import RedisUnavailable
from trio_worker.queue.scripts import Script

P = ParamSpec("P")
T = TypeVar("T")

# Error replies that say "not now" (or "not you") rather than "your request is wrong".
_UNAVAILABLE_REPLIES = ("WRONGTYPE", "BUSY", "MISCONF", "NOREPLICAS", "UNBLOCKED", "MASTERDOWN")
_UNAVAILABLE_TYPES = (
    rex.ConnectionError,  # incl. authentication, loading, max clients
    rex.TimeoutError,
    rex.InvalidResponse,  # a reply cut short: the connection is unusable
    rex.ReadOnlyError,  # a replica (after a failover): find the primary again
    rex.OutOfMemoryError,
    rex.NoPermissionError,
    rex.TryAgainError,
    rex.ClusterDownError,
    OSError,  # incl. ssl.SSLError
)


def unavailable(exc: BaseException, address: str) -> RedisUnavailable | None:
    """The domain error for a driver error, or None if it is a bug."""
    if isinstance(exc, _UNAVAILABLE_TYPES):
        return RedisUnavailable(address, describe(exc))
    if isinstance(exc, rex.ResponseError) and str(exc).startswith(_UNAVAILABLE_REPLIES):
        return RedisUnavailable(address, describe(exc))
    return None


class Boundary:
    """A redis-py client and the address it stands for; calls mapped to the domain."""

    def __init__(self, client: aredis.Redis, address: str) -> None:
        self.client = client
        self.address = address
        self._scripts: dict[str, Any] = {}

    async def call(self, fn: Callable[P, Awaitable[T]], *args: P.args, **kw: P.kwargs) -> T:
        try:
            return await aio(fn, *args, **kw)
        except (rex.RedisError, OSError) as exc:
            mapped = unavailable(exc, self.address)
            if mapped is None:
                raise
            raise mapped from exc

    async def run(self, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run one of ``scripts`` (EVALSHA, loading it first where the server lacks it)."""
        registered = self._scripts.get(script.name)
        if registered is None:
            registered = self._scripts[script.name] = self.client.register_script(script.source)
        return await self.call(registered, keys=list(keys), args=list(args))

    async def round_trip(self, commands: Sequence[Sequence[Any]], *, replies: int) -> list[Any]:
        """Send ``commands`` in one packet on one connection and read ``replies`` replies.

        For the few exchanges redis-py has no call for (one whose reply is suppressed with
        ``CLIENT REPLY SKIP``). A failure leaves the connection's state unknown: it is closed.
        """

        async def exchange() -> list[Any]:
            pool = self.client.connection_pool
            conn = await pool.get_connection()  # type: ignore[no-untyped-call]
            try:
                await conn.send_packed_command(conn.pack_commands(commands))
                return [await conn.read_response() for _ in range(replies)]
            except BaseException:
                await conn.disconnect()
                raise
            finally:
                await pool.release(conn)

        return await self.call(exchange)

    async def aclose(self) -> None:
        await aio(self.client.aclose)
