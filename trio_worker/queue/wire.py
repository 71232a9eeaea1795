"""Raw exchanges on redis-py's connections, for what its client has no call for, or does slower.

All of these run on the asyncio loop (``bridge.aio``), inside the boundary (``Boundary.call``),
which bounds them in time and maps their errors. A failure leaves a connection's state unknown:
it is closed before it goes back to its pool, which opens it afresh when next lent.

- ``Scripts``: EVALSHA on a connection kept between calls (the worker's hot path);
- ``pooled_exchange`` / ``cluster_exchange``: several commands in one packet on one connection
  (a reply suppressed with ``CLIENT REPLY SKIP``, a command then ``WAIT`` on its own connection);
- ``session``: how a connection reached Redis, for ``trio-worker check``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aredis
import redis.exceptions as rex
from redis.asyncio.cluster import RedisCluster

from trio_worker import compat
from trio_worker.queue.scripts import Script


class Scripts:
    """EVALSHA on a pool connection kept from one script call to the next.

    A script call is the worker's hot path (a take per batch), and redis-py's pool costs more per
    call than the exchange itself (locks, connection checks, events). Any failure closes the
    connection and gives it back to the pool; so does ``forget`` (a failover: the next
    connection asks Sentinel afresh). Concurrent calls each take a connection of their own.
    Where redis-py's connection no longer shows whether the server closed it while idle
    (``compat``), nothing is kept: each call borrows from the pool, which checks.
    """

    def __init__(self) -> None:
        self._kept: Any = None  # None while a call uses it

    async def evalsha(
        self, pool: aredis.ConnectionPool, script: Script, keys: Sequence[str], args: Sequence[Any]
    ) -> Any:
        """On the asyncio loop: run ``script``, loading it first where the server lacks it."""
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
        if self._kept is None and compat.redis_reader_visible():
            self._kept = conn
        else:
            await pool.release(conn)
        return reply

    async def forget(self, pool: aredis.ConnectionPool) -> None:
        """On the asyncio loop: give the kept connection back to the pool, closed."""
        conn, self._kept = self._kept, None
        if conn is not None:
            await _give_back(pool, conn)


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


async def pooled_exchange(
    pool: aredis.ConnectionPool, commands: Sequence[Sequence[Any]], replies: int
) -> list[Any]:
    """On the asyncio loop: ``commands`` in one packet on a connection of one server's (or
    Sentinel's primary's) pool, and ``replies`` replies read."""
    conn = await pool.get_connection()  # type: ignore[no-untyped-call]
    try:
        await conn.send_packed_command(conn.pack_commands(commands))
        return [await conn.read_response() for _ in range(replies)]
    except BaseException:
        await conn.disconnect()
        raise
    finally:
        await pool.release(conn)


async def cluster_exchange(
    cluster: RedisCluster, key: str, commands: Sequence[Sequence[Any]], replies: int
) -> list[Any]:
    """On the asyncio loop: as ``pooled_exchange``, on a connection to the primary that serves
    ``key``'s slot, as redis-py's cluster client would pick it; on a redirection or a node
    failure, the slot map is refreshed first, for the caller's retry."""
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
                await cluster.nodes_manager.initialize()  # else the caller's retry tries again
        raise
    finally:
        node.release(conn)


@dataclass(frozen=True)
class Session:
    """How one connection reached Redis, for ``trio-worker check`` (never a secret)."""

    server: str  # the address it reached: the primary Sentinel named, the slot's node
    user: str  # as the server sees it (ACL WHOAMI)
    tls: str | None  # "TLSv1.3 TLS_AES_256_GCM_SHA384", "TLS" when unknown, None: plain text
    replicas: int  # replicas connected to that server
    cluster_node: bool  # the server is a Redis Cluster node
    version: str  # the server's redis_version, "" if INFO is not allowed


async def session(client: aredis.Redis | RedisCluster, key: str) -> Session:
    """On the asyncio loop: open (or take) a connection where ``key`` lives and ask it."""
    if isinstance(client, RedisCluster):
        await client.initialize()
        node = client.get_node_from_key(key)
        if node is None:
            raise rex.SlotNotCoveredError(f"no node serves the slot of {key!r}")
        conn = node.acquire_connection()
        try:
            return await _ask(conn)
        except BaseException:
            await conn.disconnect()
            raise
        finally:
            node.release(conn)
    pool = client.connection_pool
    pooled = await pool.get_connection()  # type: ignore[no-untyped-call]
    try:
        return await _ask(pooled)
    except BaseException:
        await pooled.disconnect()
        raise
    finally:
        await pool.release(pooled)


async def _ask(conn: Any) -> Session:
    commands = [("ACL", "WHOAMI"), ("INFO", "replication"), ("INFO", "cluster"), ("INFO", "server")]
    await conn.send_packed_command(conn.pack_commands(commands))
    user: Any
    try:
        user = await conn.read_response()
    except rex.ResponseError:  # before Redis 6, or an ACL user without the right
        user = None
    replication = info(await conn.read_response())
    cluster = info(await conn.read_response())
    server = info(await conn.read_response())
    where = f"unix:{conn.path}" if getattr(conn, "path", None) else f"{conn.host}:{conn.port}"
    return Session(
        server=where,
        user=user.decode() if isinstance(user, bytes) else str(user or "default"),
        tls=_tls_of(conn),
        replicas=int(replication.get("connected_slaves", "0")),
        cluster_node=cluster.get("cluster_enabled") == "1",
        version=server.get("redis_version", ""),
    )


def _tls_of(conn: Any) -> str | None:
    """The TLS version and cipher of an open connection, or None for plain text; "TLS" where
    redis-py no longer shows its stream (``compat``)."""
    writer = getattr(conn, "_writer", None)  # redis-py keeps the stream here
    if writer is None:
        return "TLS" if isinstance(conn, aredis.SSLConnection) else None
    sslobj = writer.get_extra_info("ssl_object")
    if sslobj is None:
        return None
    cipher = sslobj.cipher()
    return f"{sslobj.version()} {cipher[0]}" if cipher else str(sslobj.version())


def info(reply: Any) -> dict[str, str]:
    """An INFO reply (text, or as redis-py parsed it) as a flat mapping of strings."""
    if isinstance(reply, dict):
        return {str(k): str(v) for k, v in reply.items()}
    text = reply.decode() if isinstance(reply, bytes) else str(reply)
    return dict(
        line.split(":", 1) for line in text.splitlines() if ":" in line and not line.startswith("#")
    )
