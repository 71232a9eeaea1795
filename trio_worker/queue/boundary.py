"""Every call to redis-py goes through ``Boundary``: bounded in time, errors mapped, failovers
followed.

- A call that gets no reply within ``timeout_s`` (a dead host that sent no FIN, a blackholed
  route) is given up on: redis-py closes the connection, whose state is unknown.
- Errors are mapped by ``queue.errors.redis_errors``, the same for every call, re-discovery and
  close: ``RedisUnavailable`` with its kind, or the bug as itself.
- A failure that means "you are talking to a replica" (READONLY, a blocked command unblocked by
  a role change), or any lost connection behind Sentinel, makes the client find the primary
  again: its idle connections are dropped, so the next ones ask Sentinel (or resolve the host
  name, or read the cluster's slots) afresh.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ParamSpec, TypeVar

import trio
from redis.asyncio.cluster import RedisCluster

from trio_worker.bridge import aio
from trio_worker.config import Config
from trio_worker.errors import RedisUnavailable
from trio_worker.queue import wire
from trio_worker.queue.client import Client, connect, sentinel_of
from trio_worker.queue.errors import Kind, redis_errors, replica_reached
from trio_worker.queue.scripts import Script

P = ParamSpec("P")
T = TypeVar("T")

# How much longer than a blocking command's own timeout a call may take before the server counts
# as gone.
REPLY_SLACK_S = 5.0


def _closed_under_us(exc: AttributeError) -> bool:
    """redis-py's cluster client closes a node's idle connections in a background task when it
    refreshes the topology (a failover, a node gone); a call that took one of them just then
    finds its stream gone, and fails inside redis-py with an AttributeError on None. That is a
    lost connection (retried; the in-flight list is the truth), not a bug of ours."""
    if "'NoneType' object has no attribute" not in str(exc):
        return False
    tb, last = exc.__traceback__, None
    while tb is not None:
        last, tb = tb, tb.tb_next
    module = "" if last is None else str(last.tb_frame.f_globals.get("__name__", ""))
    return module.startswith("redis.asyncio.")


class Boundary:
    """A redis-py client and the address it stands for; calls mapped to the domain, and each
    bounded by ``timeout_s``."""

    def __init__(self, client: Client, address: str, *, timeout_s: float) -> None:
        self.client = client
        self.address = address
        self.timeout_s = timeout_s
        self._sentinel = sentinel_of(client) is not None
        self._registered: dict[str, Any] = {}  # a cluster's scripts, by name
        self._scripts = wire.Scripts()

    @classmethod
    def open(cls, config: Config, *, block_s: float) -> Boundary:
        """A client for ``config`` (nothing connected yet) whose calls may block up to
        ``block_s`` (a blocking command's own timeout): each gets ``REPLY_SLACK_S`` more."""
        return cls(connect(config), config.redis_address, timeout_s=block_s + REPLY_SLACK_S)

    async def call(self, fn: Callable[P, Awaitable[T]], *args: P.args, **kw: P.kwargs) -> T:
        try:
            with redis_errors(self.address):
                try:
                    with trio.move_on_after(self.timeout_s):
                        return await aio(fn, *args, **kw)
                except AttributeError as exc:
                    if isinstance(self.client, RedisCluster) and _closed_under_us(exc):
                        raise RedisUnavailable(
                            self.address,
                            "connection closed by a cluster topology refresh",
                            kind=Kind.CLUSTER,
                        ) from exc
                    raise
            # Cancelled mid-call, redis-py closed the connection: its state is unknown.
            raise RedisUnavailable(
                self.address,
                f"no reply within {self.timeout_s:g} s",
                kind=Kind.UNREACHABLE,
            )
        except RedisUnavailable as exc:
            # Behind Sentinel a failed connection may mean a failed primary: ask again.
            lost = self._sentinel and exc.kind == Kind.UNREACHABLE
            if lost or replica_reached(exc):
                await self.rediscover()
            raise

    async def rediscover(self) -> None:
        """Find the primary again: drop idle connections (the next ones ask Sentinel, resolve
        the host name, or re-read the cluster's slots). Connections in use finish their call."""
        with (
            trio.move_on_after(self.timeout_s),
            contextlib.suppress(RedisUnavailable),
            redis_errors(self.address),
        ):
            if isinstance(self.client, RedisCluster):
                await aio(self.client.nodes_manager.initialize)
            else:
                pool = self.client.connection_pool
                await aio(self._scripts.forget, pool)
                await aio(pool.disconnect, inuse_connections=False)

    async def run(self, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run one of ``scripts`` (EVALSHA, loading it first where the server lacks it)."""
        if not isinstance(self.client, RedisCluster):
            pool = self.client.connection_pool
            return await self.call(self._scripts.evalsha, pool, script, keys, args)
        registered = self._registered.get(script.name)
        if registered is None:
            registered = self.client.register_script(script.source)
            self._registered[script.name] = registered
        return await self.call(registered, keys=list(keys), args=list(args))

    async def round_trip(
        self, commands: Sequence[Sequence[Any]], *, replies: int, key: str | None = None
    ) -> list[Any]:
        """Send ``commands`` in one packet on one connection and read ``replies`` replies.

        In a cluster the packet goes to the primary that serves ``key``'s slot (by default the
        first command's first argument; every key in the packet must share that slot). If that
        slot moved (MOVED, ASK) or its node failed, the slot map is read again and the call
        fails with ``RedisUnavailable``: the caller retries, re-reading what it must (its
        in-flight list is the truth), and the next try reaches the slot's new owner.
        """
        if isinstance(self.client, RedisCluster):
            slot_key = str(commands[0][1]) if key is None else key
            return await self.call(wire.cluster_exchange, self.client, slot_key, commands, replies)
        pool = self.client.connection_pool
        return await self.call(wire.pooled_exchange, pool, commands, replies)

    async def session(self, key: str) -> wire.Session:
        """How a connection where ``key`` lives reached Redis (``trio-worker check``)."""
        return await self.call(wire.session, self.client, key)

    async def aclose(self) -> None:
        """Close every connection: behind Sentinel the Sentinels' clients first (a few
        connections, which the client's opened to find the primary), then the client's, even
        if closing the first failed. A failure is a ``RedisUnavailable``."""
        sentinel = sentinel_of(self.client)
        with redis_errors(self.address):
            try:
                if sentinel is not None:
                    await aio(sentinel.aclose)
            finally:
                await aio(self.client.aclose)
