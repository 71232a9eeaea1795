"""The Redis error boundary: every call to redis-py goes through ``Boundary.call``.

What Redis or the connection says is mapped to the domain here, once (httpcore's
``map_exceptions`` idea): a connection that failed or timed out (a refused TLS handshake
included, its message naming the certificate problem), and the server's "not now" replies (a
read-only replica, loading, out of memory, a busy script, a refused right, a key of the wrong
type an operator created, a cluster slot that moved), become ``RedisUnavailable``: retried with
backoff, 503 meanwhile. Any other error is a bug (ours or a script's) and propagates as itself.

A reply that says "you are talking to a replica" (READONLY, or a blocked command unblocked by a
role change) also makes the client find the primary again: its idle connections are dropped, so
the next ones ask Sentinel (or resolve the host name) afresh.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ParamSpec, TypeVar

import redis.asyncio as aredis
import redis.exceptions as rex
import trio
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.sentinel import MasterNotFoundError

from trio_worker import tls
from trio_worker.bridge import aio, describe
from trio_worker.config import Config
from trio_worker.errors import RedisUnavailable
from trio_worker.queue.client import Client, connect, sentinel_of
from trio_worker.queue.scripts import Script

P = ParamSpec("P")
T = TypeVar("T")

# Error replies that say "not now" (or "not you") rather than "your request is wrong".
# How much longer than a blocking command's own timeout a call may take before the server counts
# as gone (a dead host that sent no FIN, a blackholed route).
REPLY_SLACK_S = 5.0

_UNAVAILABLE_REPLIES = ("WRONGTYPE", "BUSY", "MISCONF", "NOREPLICAS", "UNBLOCKED", "MASTERDOWN")
# A cluster's replies to a client that does not know it talks to a cluster (REDIS_CLUSTER unset).
_CLUSTER_REPLIES = ("MOVED", "ASK", "CLUSTERDOWN", "CROSSSLOT")
_UNAVAILABLE_TYPES = (
    rex.ConnectionError,  # incl. authentication, loading, max clients, no Sentinel primary
    rex.TimeoutError,
    rex.InvalidResponse,  # a reply cut short: the connection is unusable
    rex.ReadOnlyError,  # a replica (after a failover): find the primary again
    rex.OutOfMemoryError,
    rex.NoPermissionError,
    rex.TryAgainError,
    rex.ClusterError,  # incl. CLUSTERDOWN, and redirections that never settled
    rex.AskError,  # incl. MOVED: the slot is served elsewhere now (the round trip's, see below)
    rex.SlotNotCoveredError,
    OSError,  # incl. ssl.SSLError
)
# redis-py's cluster client says "no node answered" (or "this is no cluster") with its generic
# exception, which otherwise means a programming error (a command it can't route): these only.
_CLUSTER_UNREACHABLE = (
    "Redis Cluster cannot be connected",
    "All slots are not covered",
    "Cluster mode is not enabled",
    "startup_nodes could not agree",
)
# Replies that mean the connection reached a replica, not the primary.
_REPLICA_REPLIES = ("UNBLOCKED", "MASTERDOWN", "READONLY")


def unavailable(exc: BaseException, address: str) -> RedisUnavailable | None:
    """The domain error for a driver error, or None if it is a bug."""
    if type(exc) is rex.ResponseError and str(exc).startswith(_CLUSTER_REPLIES):
        # A plain client's parser has no cluster errors: it met a cluster node.
        return RedisUnavailable(address, "a Redis Cluster node: set REDIS_CLUSTER=true")
    if isinstance(exc, rex.RedisClusterException):
        if not isinstance(exc, rex.SlotNotCoveredError) and not str(exc).startswith(
            _CLUSTER_UNREACHABLE
        ):
            return None
    elif not isinstance(exc, _UNAVAILABLE_TYPES) and not (
        isinstance(exc, rex.ResponseError) and str(exc).startswith(_UNAVAILABLE_REPLIES)
    ):
        return None
    if isinstance(exc, MasterNotFoundError):
        return RedisUnavailable(address, _no_primary(str(exc)))
    if isinstance(exc, rex.AskError):  # MOVED too: the round trip's, which follows no redirection
        kind = "MOVED" if isinstance(exc, rex.MovedError) else "ASK"
        return RedisUnavailable(
            address, f"slot {exc.slot_id} is served by {exc.host}:{exc.port} ({kind})"
        )
    reason = tls.describe_failure(exc, tls.REDIS)
    return RedisUnavailable(address, describe(exc) if reason is None else reason)


def _no_primary(text: str) -> str:
    """Sentinel's "No master found for 'x' : <client> - <error>, ...", said shortly (redis-py's
    text repeats each Sentinel client's whole configuration)."""
    found = re.search(r"for '([^']*)'", text)
    service = found.group(1) if found else "?"
    _, _, errors = text.partition(" : ")
    silent = errors.count(" - ")
    if silent:
        return (
            f"no Sentinel named a primary for {service!r}: {silent} did not answer"
            " (unreachable, or refusing REDIS_SENTINEL_PASSWORD)"
        )
    return (
        f"the Sentinels name no primary for {service!r} (a failover under way, or a service"
        " they do not watch: REDIS_SENTINEL_MASTER)"
    )


def _reached_a_replica(exc: BaseException) -> bool:
    """A sign that the connection is to a replica now (a failover happened)."""
    for error in tls.chain(exc):
        if isinstance(error, rex.ReadOnlyError):
            return True
        if isinstance(error, rex.ResponseError) and str(error).startswith(_REPLICA_REPLIES):
            return True
    # Sentinel's connection turns READONLY into this, after dropping itself.
    return isinstance(exc, rex.ConnectionError) and "is now a slave" in str(exc)


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
    bounded by ``timeout_s`` (a server that stops answering without closing the connection)."""

    def __init__(self, client: Client, address: str, *, timeout_s: float) -> None:
        self.client = client
        self.address = address
        self.timeout_s = timeout_s
        self._sentinel = sentinel_of(client) is not None
        self._scripts: dict[str, Any] = {}
        # A pool connection kept between script calls (``_evalsha``); None while one uses it.
        self._kept: Any = None

    @classmethod
    def open(cls, config: Config, *, block_s: float) -> Boundary:
        """A client for ``config`` (nothing connected yet) whose calls may block up to
        ``block_s`` (a blocking command's own timeout): each gets ``REPLY_SLACK_S`` more."""
        return cls(connect(config), config.redis_address, timeout_s=block_s + REPLY_SLACK_S)

    async def call(self, fn: Callable[P, Awaitable[T]], *args: P.args, **kw: P.kwargs) -> T:
        try:
            with trio.move_on_after(self.timeout_s):
                return await aio(fn, *args, **kw)
            # Cancelled mid-call, redis-py closed the connection: its state is unknown.
            raise rex.TimeoutError(f"no reply from {self.address} within {self.timeout_s:g} s")
        except AttributeError as exc:
            if isinstance(self.client, RedisCluster) and _closed_under_us(exc):
                raise RedisUnavailable(
                    self.address, "connection closed by a cluster topology refresh"
                ) from exc
            raise
        except (rex.RedisError, rex.RedisClusterException, OSError) as exc:
            mapped = unavailable(exc, self.address)
            if mapped is None:
                raise
            # Behind Sentinel a failed connection may mean a failed primary: ask again.
            lost = self._sentinel and isinstance(exc, rex.ConnectionError | rex.TimeoutError)
            if lost or _reached_a_replica(exc):
                await self.rediscover()
            raise mapped from exc

    async def rediscover(self) -> None:
        """Find the primary again: drop idle connections (the next ones ask Sentinel, resolve
        the host name, or re-read the cluster's slots). Connections in use finish their call."""
        with (
            trio.move_on_after(self.timeout_s),
            contextlib.suppress(rex.RedisError, rex.RedisClusterException, OSError),
        ):
            if isinstance(self.client, RedisCluster):
                await aio(self.client.nodes_manager.initialize)
            else:
                pool = self.client.connection_pool
                await aio(self._forget_kept, pool)
                await aio(pool.disconnect, inuse_connections=False)

    async def run(self, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run one of ``scripts`` (EVALSHA, loading it first where the server lacks it)."""
        if not isinstance(self.client, RedisCluster):
            return await self.call(self._evalsha, self.client.connection_pool, script, keys, args)
        registered = self._scripts.get(script.name)
        if registered is None:
            registered = self._scripts[script.name] = self.client.register_script(script.source)
        return await self.call(registered, keys=list(keys), args=list(args))

    async def _evalsha(
        self,
        pool: aredis.ConnectionPool,
        script: Script,
        keys: Sequence[str],
        args: Sequence[Any],
    ) -> Any:
        """On the asyncio loop: EVALSHA on the connection kept from the last script call.

        A script call is the worker's hot path (a take per batch), and redis-py's pool costs
        more per call than the exchange itself (locks, connection checks, events: 60 us of the
        215 us a 1,000-vote reply costs). Any failure closes the connection and gives it back
        to the pool, which opens the next one afresh (after a failover, where Sentinel says);
        so does ``rediscover``. Concurrent calls each take a connection of their own.
        """
        conn, self._kept = self._kept, None
        if conn is not None and not _still_open(conn):
            await _give_back(pool, conn)
            conn = None
        if conn is None:
            conn = await pool.get_connection()  # type: ignore[no-untyped-call]
        evalsha = ("EVALSHA", script.sha, len(keys), *keys, *args)
        try:
            try:
                reply = await _exchange(conn, evalsha)
            except rex.NoScriptError:  # a server restarted, or flushed its scripts
                await _exchange(conn, ("SCRIPT", "LOAD", script.source))
                reply = await _exchange(conn, evalsha)
        except BaseException:
            await _give_back(pool, conn)
            raise
        if self._kept is None:
            self._kept = conn
        else:
            await pool.release(conn)
        return reply

    async def _forget_kept(self, pool: aredis.ConnectionPool) -> None:
        """Give the kept connection back to the pool, closed."""
        conn, self._kept = self._kept, None
        if conn is not None:
            await _give_back(pool, conn)

    async def round_trip(
        self, commands: Sequence[Sequence[Any]], *, replies: int, key: str | None = None
    ) -> list[Any]:
        """Send ``commands`` in one packet on one connection and read ``replies`` replies.

        For the few exchanges redis-py has no call for (one whose reply is suppressed with
        ``CLIENT REPLY SKIP``, or a command followed by ``WAIT`` on its own connection). A
        failure leaves the connection's state unknown: it is closed.

        In a cluster the packet goes to the primary that serves ``key``'s slot (by default the
        first command's first argument; every key in the packet must share that slot). If that
        slot moved (MOVED, ASK) or its node failed, the slot map is read again and the call
        fails with ``RedisUnavailable``: the caller retries, re-reading what it must (its
        in-flight list is the truth), and the next try reaches the slot's new owner.
        """
        if isinstance(self.client, RedisCluster):
            cluster = self.client
            slot_key = str(commands[0][1]) if key is None else key

            async def exchange() -> list[Any]:
                return await _cluster_exchange(cluster, slot_key, commands, replies)

        else:
            pool = self.client.connection_pool

            async def exchange() -> list[Any]:
                return await _pooled_exchange(pool, commands, replies)

        return await self.call(exchange)

    async def aclose(self) -> None:
        """Close every connection: behind Sentinel the Sentinels' clients first (a few
        connections, which the client's opened to find the primary), then the client's, even
        if closing the first failed. A failure is a ``RedisUnavailable``."""
        sentinel = sentinel_of(self.client)
        try:
            try:
                if sentinel is not None:
                    await aio(sentinel.aclose)
            finally:
                await aio(self.client.aclose)
        except (rex.RedisError, rex.RedisClusterException, OSError) as exc:
            mapped = unavailable(exc, self.address)
            if mapped is None:
                raise
            raise mapped from exc


def _still_open(conn: Any) -> bool:
    """Whether a kept connection is still open as far as the loop has seen: a server that
    closed it while it sat idle (a restart, an idle timeout, CLIENT KILL) has fed its reader
    the end of the stream. The pool checks this (and unread data, which a kept connection never
    holds: any failure closes it) before lending a connection; so must we."""
    reader = getattr(conn, "_reader", None)
    return reader is not None and not reader.at_eof()


async def _give_back(pool: aredis.ConnectionPool, conn: Any) -> None:
    """Close a connection and give it back to its pool, which reopens it when next lent."""
    try:
        await conn.disconnect()
    finally:
        await pool.release(conn)


async def _exchange(conn: Any, command: Sequence[Any]) -> Any:
    """One command and its reply on ``conn`` (an error reply raised)."""
    await conn.send_packed_command(conn.pack_command(*command))
    return await conn.read_response()


async def _pooled_exchange(
    pool: aredis.ConnectionPool, commands: Sequence[Sequence[Any]], replies: int
) -> list[Any]:
    """One server, or Sentinel's primary: a connection of the client's pool."""
    conn = await pool.get_connection()  # type: ignore[no-untyped-call]
    try:
        await conn.send_packed_command(conn.pack_commands(commands))
        return [await conn.read_response() for _ in range(replies)]
    except BaseException:
        await conn.disconnect()
        raise
    finally:
        await pool.release(conn)


async def _cluster_exchange(
    cluster: RedisCluster, key: str, commands: Sequence[Sequence[Any]], replies: int
) -> list[Any]:
    """A connection to the primary that serves ``key``'s slot, as redis-py's cluster client
    would pick it; on a redirection or a node failure, the slot map is refreshed first."""
    await cluster.initialize()  # nothing to do unless a failure asked for it
    node = cluster.get_node_from_key(key)
    if node is None:
        raise rex.SlotNotCoveredError(f"no node serves the slot of {key!r}")
    conn = node.acquire_connection()
    try:
        await node.disconnect_if_needed(conn)
        await conn.send_packed_command(conn.pack_commands(commands))
        return [await conn.read_response() for _ in range(replies)]
    except BaseException as exc:
        await conn.disconnect()
        if isinstance(exc, rex.MovedError):
            # The slot's owner changed (a failover or a resharding): patch the map now.
            await cluster.nodes_manager.move_slot(exc)
        elif isinstance(
            exc, rex.ConnectionError | rex.TimeoutError | rex.ClusterDownError | OSError
        ):
            # Read the slot map again (its connections are recycled lazily, as redis-py does).
            with contextlib.suppress(rex.RedisError, rex.RedisClusterException, OSError):
                await cluster.nodes_manager.initialize()
        raise
    finally:
        node.release(conn)
