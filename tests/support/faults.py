"""A fault-injecting TCP proxy, written with Trio, for putting between a worker and a store.

Faults:
- ``cut_all()``: close every proxied connection now (both sides).
- ``blackhole``: while true, nothing is forwarded in either direction (bytes wait).
- ``blackhole_after(pattern)``: the next client chunk containing ``pattern`` is forwarded, and
  ``blackhole`` is set before anything else is: its reply, and all after it, wait.
- ``refuse``: while true, a new connection is closed at once (the store is down).
- ``latency_s``: each forwarded chunk is held this long.
- ``cut_reply_after(pattern)``: the next client chunk containing ``pattern`` is forwarded, the
  server's reply is awaited and thrown away, and the connection is cut: the request took effect
  but the client never learns it (e.g. a MySQL COMMIT, a Redis script).
- ``cut_before(pattern)``: the next client chunk containing ``pattern`` is never forwarded and the
  connection is cut: the request did not take effect.
- ``half_reply_after(pattern)``: like ``cut_reply_after``, but the first half of the reply's first
  chunk is delivered before the cut: the client's parser sees a truncated reply.
- ``delay_before(pattern)``: the next client chunk containing ``pattern`` waits, and its
  connection with it (the client's close included), until ``deliver_delayed()`` forwards it to
  the server: a request that takes effect long after its client gave up on it (``delaying``
  is set while one waits). ``deliver_delayed_after(pattern)``: right after the next client
  chunk containing ``pattern`` (on any connection) is forwarded.
- ``hold_reply_after(pattern)`` / ``hold_before(pattern)``: the request is forwarded (or not) and
  then the connection freezes; ``holding`` is set, so a test can kill the client at exactly that
  moment. A frozen connection passes nothing, not even the client's close (as a dead network
  would not), until ``release()`` cuts it (a held request is never forwarded).
Each armed fault fires once per call; ``fired`` counts what fired; ``disarm`` takes back one
armed fault that has not fired. Without faults:
- ``watch(pattern)``: ``seen[pattern]`` counts the client chunks that contain it (what a worker
  asked its store for, e.g. that it took no votes);
- ``held_ports()``: the proxy's own local ports towards the server of the connections frozen
  now, by which the server's process list names their sessions (``127.0.0.1:<port>``).

``mysql_proxy`` puts one in front of a test's MySQL; with ``stall``, MySQL is black-holed once
the first batch is sent (``stall_with_a_batch_in_flight`` waits for that moment).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

import redis
import trio

from tests.support.stores import inflight_keys, row_count
from tests.support.waiting import wait_until
from trio_worker.config import Config


@dataclass(eq=False)
class _Conn:
    client: trio.SocketStream
    server: trio.SocketStream
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    drop_reply: bool = False
    half_reply: bool = False
    hold_reply: bool = False
    released: trio.Event | None = None  # set while frozen: the release that ends it


class FaultProxy:
    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self.blackhole = False
        self.refuse = False
        self.latency_s = 0.0
        self.fired: Counter[str] = Counter()
        self.seen: Counter[bytes] = Counter()
        self._watched: list[bytes] = []
        self.connections_seen = 0
        self._conns: set[_Conn] = set()
        self._held: set[_Conn] = set()
        self._cut_reply: list[bytes] = []
        self._cut_before: list[bytes] = []
        self._half_reply: list[bytes] = []
        self._hold_reply: list[bytes] = []
        self._hold_before: list[bytes] = []
        self._blackhole_after: list[bytes] = []
        self._delay_before: list[bytes] = []
        self._deliver_after: list[bytes] = []
        self._deliver = trio.Event()
        self.delaying = trio.Event()
        self.holding = trio.Event()
        self._released = trio.Event()
        self._flowing = trio.Event()
        self._flowing.set()

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, self._handle, listeners)
            task_status.started(self.port)

    def set_blackhole(self, on: bool) -> None:
        self.blackhole = on
        if on:
            self._flowing = trio.Event()
        else:
            self._flowing.set()

    def cut_all(self) -> None:
        for conn in list(self._conns):
            conn.scope.cancel()
        self.fired["cut_all"] += 1

    def blackhole_after(self, pattern: bytes) -> None:
        self._blackhole_after.append(pattern)

    def cut_reply_after(self, pattern: bytes) -> None:
        self._cut_reply.append(pattern)

    def cut_before(self, pattern: bytes) -> None:
        self._cut_before.append(pattern)

    def half_reply_after(self, pattern: bytes) -> None:
        self._half_reply.append(pattern)

    def hold_reply_after(self, pattern: bytes) -> None:
        self._hold_reply.append(pattern)

    def hold_before(self, pattern: bytes) -> None:
        self._hold_before.append(pattern)

    def delay_before(self, pattern: bytes) -> None:
        self._delay_before.append(pattern)

    def deliver_delayed_after(self, pattern: bytes) -> None:
        self._deliver_after.append(pattern)

    def deliver_delayed(self) -> None:
        """Forward the delayed requests to the server now (their replies go nowhere)."""
        self._deliver.set()
        self._deliver = trio.Event()
        self.delaying = trio.Event()

    def watch(self, pattern: bytes) -> None:
        if pattern not in self._watched:
            self._watched.append(pattern)

    def disarm(self, kind: str, pattern: bytes) -> bool:
        """Take back one armed ``kind`` (``cut_reply``, ``cut_before``, ``half_reply``,
        ``hold_reply``, ``hold_before``) on ``pattern``; False if it has fired meanwhile."""
        armed = {
            "cut_reply": self._cut_reply,
            "cut_before": self._cut_before,
            "half_reply": self._half_reply,
            "hold_reply": self._hold_reply,
            "hold_before": self._hold_before,
        }[kind]
        if pattern in armed:
            armed.remove(pattern)
            return True
        return False

    def held_ports(self) -> list[int]:
        """Local ports (towards the server) of the connections frozen now and still open."""
        ports = []
        for conn in self._held & self._conns:
            try:
                ports.append(int(conn.server.socket.getsockname()[1]))
            except OSError:
                continue  # closed meanwhile
        return sorted(ports)

    def release(self) -> None:
        """Cut the held connections, and disarm every fault not yet fired."""
        self._released.set()
        self._released = trio.Event()
        self.holding = trio.Event()
        for armed in self._armed():
            armed.clear()

    def _armed(self) -> list[list[bytes]]:
        return [
            self._cut_reply,
            self._cut_before,
            self._half_reply,
            self._hold_reply,
            self._hold_before,
            self._blackhole_after,
            self._delay_before,
            self._deliver_after,
        ]

    @property
    def pending(self) -> int:
        """Faults armed but not yet fired."""
        return sum(len(armed) for armed in self._armed())

    async def _freeze(self, kind: str, conn: _Conn, scope: trio.CancelScope) -> None:
        self.fired[kind] += 1
        released = conn.released = self._released
        self._held.add(conn)
        self.holding.set()
        try:
            await released.wait()
        finally:
            self._held.discard(conn)
        scope.cancel()

    async def _delay(self, conn: _Conn, chunk: bytes | bytearray, scope: trio.CancelScope) -> None:
        self.fired["delay_before"] += 1
        deliver = self._deliver
        self.delaying.set()
        await deliver.wait()
        await conn.server.send_all(chunk)
        await trio.sleep(0.5)  # the server reads and runs it; the reply has no one to go to
        scope.cancel()

    async def _handle(self, client: trio.SocketStream) -> None:
        self.connections_seen += 1
        if self.refuse:
            await trio.aclose_forcefully(client)
            return
        try:
            server = await trio.open_tcp_stream(*self.target)
        except OSError:
            await client.aclose()
            return
        conn = _Conn(client, server)
        self._conns.add(conn)
        try:
            with conn.scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._upstream, conn, nursery.cancel_scope)
                    nursery.start_soon(self._downstream, conn, nursery.cancel_scope)
        except* (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # a peer went away (reset, killed process): that connection is simply over
        finally:
            self._conns.discard(conn)
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(client)
                await trio.aclose_forcefully(server)

    async def _hold(self) -> None:
        await self._flowing.wait()
        if self.latency_s:
            await trio.sleep(self.latency_s)

    def _take(self, armed: list[bytes], chunk: bytes | bytearray) -> bool:
        for i, pattern in enumerate(armed):
            if pattern in chunk:
                del armed[i]
                return True
        return False

    async def _upstream(self, conn: _Conn, scope: trio.CancelScope) -> None:
        async for chunk in conn.client:
            if conn.released is not None:
                continue  # frozen: nothing reaches the server
            await self._hold()
            for pattern in self._watched:
                if pattern in chunk:
                    self.seen[pattern] += 1
            if self._take(self._cut_before, chunk):
                self.fired["cut_before"] += 1
                scope.cancel()
                return
            if self._take(self._hold_before, chunk):
                await self._freeze("hold_before", conn, scope)
                return
            if self._take(self._delay_before, chunk):
                await self._delay(conn, chunk, scope)
                return
            if self._take(self._cut_reply, chunk):
                conn.drop_reply = True
            elif self._take(self._half_reply, chunk):
                conn.half_reply = True
            elif self._take(self._hold_reply, chunk):
                conn.hold_reply = True
            if self._take(self._blackhole_after, chunk):
                self.fired["blackhole_after"] += 1
                self.set_blackhole(True)  # this chunk has passed its hold: it alone goes on
            deliver = self._take(self._deliver_after, chunk)
            await conn.server.send_all(chunk)
            if deliver:
                self.deliver_delayed()
        if conn.released is not None:
            await conn.released.wait()  # frozen: the server must not learn of the close
        scope.cancel()

    async def _downstream(self, conn: _Conn, scope: trio.CancelScope) -> None:
        async for chunk in conn.server:
            await self._hold()
            if conn.drop_reply:
                self.fired["cut_reply"] += 1
                scope.cancel()
                return
            if conn.half_reply:
                self.fired["half_reply"] += 1
                if len(chunk) > 1:
                    await conn.client.send_all(chunk[: len(chunk) // 2])
                scope.cancel()
                return
            if conn.hold_reply:
                await self._freeze("hold_reply", conn, scope)
                return
            await conn.client.send_all(chunk)
        scope.cancel()


async def mysql_proxy(
    nursery: trio.Nursery, config: Config, *, stall: bool = False, **changes: Any
) -> tuple[FaultProxy, Config]:
    """A proxy in front of MySQL, and ``config`` changed to go through it. With ``stall``, the
    first batch's packet is the last thing through: then MySQL is black-holed (its reply and
    every later packet wait), whatever the machine's speed (``stall_with_a_batch_in_flight``)."""
    proxy = FaultProxy(config.mysql_host, config.mysql_port)
    port = await nursery.start(proxy.serve)
    if stall:
        proxy.blackhole_after(b"INSERT INTO vote_batches")
    return proxy, replace(config, mysql_host="127.0.0.1", mysql_port=port, **changes)


async def stall_with_a_batch_in_flight(proxy: FaultProxy, rds: redis.Redis, config: Config) -> None:
    """Wait for the stall armed by ``mysql_proxy(stall=True)``: the first batch is committed but
    its worker has not heard (it holds the batch in flight), and later packets wait."""
    await wait_until(lambda: proxy.fired["blackhole_after"] == 1, what="the first batch sent")
    await wait_until(lambda: row_count(config) > 0, what="first rows")
    await wait_until(lambda: len(inflight_keys(rds, config)) > 0, what="a batch in flight")
