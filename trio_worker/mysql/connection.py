"""One MySQL connection: logged in (``login``), given the worker's session settings, used,
closed hard.

Every call runs on the asyncio loop through ``run``, inside the error boundary
(``codes.mysql_errors``) and under ``MYSQL_READ_TIMEOUT_S``: a server or network that stops
answering (a dead host that sent no FIN) is given up on after that long. A connection that fails
or is given up on is *abandoned*: its server session may still hold the batch's ledger row lock,
so the next ``open`` kills it (``KILL``) from the new connection, when the new connection reaches
the same server, instead of waiting for the server's own timeouts. Not shared between tasks.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncmy.errors
import trio

from trio_worker.bridge import aio
from trio_worker.config import Config
from trio_worker.errors import MySQLUnavailable
from trio_worker.mysql import login
from trio_worker.mysql.clock import ServerTime, steady_s
from trio_worker.mysql.codes import Code, code_of, mysql_errors
from trio_worker.mysql.login import CONNECT_TIMEOUT_S
from trio_worker.mysql.sql import SESSION, quote

T = TypeVar("T")

log = logging.getLogger("trio_worker.mysql")

# Replaced when idle this long, before the session's wait_timeout (600 s) could cut it.
IDLE_RECONNECT_S = 500.0
# Two boot times this close are one server run (an uptime is read a moment after the clock).
_SAME_BOOT_S = 5.0
# The most abandoned sessions remembered; older ones the server ends itself (wait_timeout).
ABANDONED_MAX = 64


# Who we are talking to, what it allows, and its clock: one round trip after connecting.
_HELLO = (
    "SELECT CONNECTION_ID(), @@max_allowed_packet, @@hostname, @@port, UNIX_TIMESTAMP(NOW(6));"
    "SHOW GLOBAL STATUS LIKE 'Uptime'"
)


@dataclass(frozen=True)
class Server:
    """What the session learned about its server at connect."""

    session_id: int
    max_packet: int
    host: str
    port: int
    booted_at: float | None  # the server's clock, seconds; None where it doesn't say (a proxy)
    clock: ServerTime  # the server's clock, read at connect

    def same_run(self, other: Server) -> bool:
        """Whether ``other`` is this server, not restarted since (session ids restart). Where
        neither says when it booted, the address alone decides."""
        if (self.host, self.port) != (other.host, other.port):
            return False
        if self.booted_at is None or other.booted_at is None:
            return self.booted_at is other.booted_at
        return abs(self.booted_at - other.booted_at) < _SAME_BOOT_S


@dataclass(frozen=True)
class Abandoned:
    """A session we gave up on; ``server`` is unknown if we gave up while setting it up."""

    session_id: int
    server: Server | None
    at_s: float = field(default_factory=steady_s)  # when (our steady clock)

    def may_live_on(self, server: Server) -> bool:
        """Whether the session may still be open on ``server``: the same server run; or, when
        we gave up before learning which server it was, one that has not restarted since (a
        restart recycles session ids: the id may be another client's now)."""
        if self.server is not None:
            return self.server.same_run(server)
        if server.booted_at is None:
            return True  # nothing tells: the process list's user check decides (``_kill``)
        uptime_s = server.clock.server_s - server.booted_at
        return uptime_s + _SAME_BOOT_S > server.clock.steady_s - self.at_s


class Connection:
    """An asyncmy connection, or none (``is_open`` False) until ``open`` succeeds."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.address = config.mysql_address
        self.server: Server | None = None
        self._raw: Any = None
        self._session_id: int | None = None  # from the server's greeting
        # Every session given up on and not yet known to be gone, oldest first: each reconnect
        # that fails after the greeting adds one, and each may hold a lock.
        self._abandoned: list[Abandoned] = []
        self._last_used = time.monotonic()
        # Whether the ledger's horizon table is there (``schema.open_with_schema``).
        self.horizon = False

    @property
    def is_open(self) -> bool:
        return self._raw is not None

    def idle_too_long(self) -> bool:
        """Unused for so long that the server may have dropped it: better replaced."""
        return time.monotonic() - self._last_used > IDLE_RECONNECT_S

    async def open(self, *, database: bool = True) -> None:
        """(Re)connect, with or without the configured database selected."""
        self.close()
        self.server = None
        greeted: list[Any] = []

        async def connect() -> Any:
            raw = login.session(self.config, database)
            greeted.append(raw)
            await raw.connect()
            return raw

        try:
            with trio.move_on_after(CONNECT_TIMEOUT_S + self.config.mysql_read_timeout_s) as scope:
                try:
                    with mysql_errors(self.address):
                        self._raw = await aio(connect)
                except MySQLUnavailable as exc:
                    raise login.failure(self.config, exc) from exc.__cause__
            if scope.cancelled_caught:
                raise MySQLUnavailable(
                    self.address, "timed out while connecting", kind="connection"
                )
        except BaseException:
            # Given up after the greeting (e.g. frozen at the driver's own set-up): the
            # server has a session for us, which the next connection kills.
            if greeted and getattr(greeted[0], "server_thread_id", None):
                self._remember(Abandoned(int(greeted[0].server_thread_id[0]), None))
                _hard_close(greeted[0])
            raise
        self._session_id = int(self._raw.server_thread_id[0])
        self._last_used = time.monotonic()
        await self.execute(SESSION)
        before = steady_s()
        rows, uptime = await self._hello()
        after = steady_s()
        session_id, max_packet, host, port, server_now = rows[0]
        now = float(server_now)
        self.server = Server(
            int(session_id),
            int(max_packet),
            str(host),
            int(port),
            None if uptime is None else now - float(uptime),
            ServerTime(now, (before + after) / 2),
        )
        await self._kill_abandoned()

    async def server_time(self) -> ServerTime:
        """The server's clock now (one round trip)."""
        before = steady_s()
        rows = await self.execute("SELECT UNIX_TIMESTAMP(NOW(6))")
        after = steady_s()
        await self.commit()
        return ServerTime(float(rows[0][0]), (before + after) / 2)

    async def _hello(self) -> tuple[list[tuple[Any, ...]], str | None]:
        async def job(raw: Any) -> tuple[list[tuple[Any, ...]], str | None]:
            async with raw.cursor() as cur:
                await cur.execute(_HELLO)
                rows = list(await cur.fetchall())
                await cur.nextset()
                # No row where a proxy in front of the server answers the status itself.
                status = list(await cur.fetchall())
            await raw.commit()
            return rows, str(status[0][1]) if status else None

        return await self.run(job)

    def _remember(self, abandoned: Abandoned) -> None:
        self._abandoned.append(abandoned)
        del self._abandoned[:-ABANDONED_MAX]

    async def _kill_abandoned(self) -> None:
        """Kill the sessions of the connections we gave up on that are on this same server: the
        same server run, or (when we gave up before learning it) a session of our own user.
        Each is forgotten only once killed, or known to be gone."""
        while self._abandoned and self.server is not None:
            old = self._abandoned[0]
            if old.may_live_on(self.server) and await self._kill(old):
                log.info("killed the abandoned session", extra={"session_id": old.session_id})
            self._abandoned.pop(0)

    async def _kill(self, old: Abandoned) -> bool:
        """KILL ``old``'s session; False if it was gone already (or is not ours to kill)."""
        session, user = old.session_id, quote(self.config.mysql_user)

        async def job(raw: Any) -> bool:
            async with raw.cursor() as cur:
                if old.server is None:
                    await cur.execute(
                        "SELECT COUNT(*) FROM information_schema.PROCESSLIST"
                        f" WHERE ID = {session} AND USER = {user}"
                    )
                    if not (await cur.fetchall())[0][0]:
                        return False
                try:
                    await cur.execute(f"KILL CONNECTION {session}")
                except asyncmy.errors.MySQLError as exc:
                    if code_of(exc) != Code.NO_SUCH_THREAD:
                        raise
                    return False
            return True

        return await self.run(job)

    def close(self) -> None:
        """A hard close: no QUIT round trip that could hang on a dead peer."""
        raw, self._raw = self._raw, None
        if raw is not None:
            _hard_close(raw)

    def abandon(self) -> None:
        """Close after a failure: the server may still hold the session (and its locks), so
        the next ``open`` kills it."""
        if self._raw is not None and self._session_id is not None:
            self._remember(Abandoned(self._session_id, self.server))
        self.close()

    async def run(self, job: Callable[[Any], Awaitable[T]]) -> T:
        """Run ``job(raw_connection)`` on the asyncio loop, errors mapped, under the read
        timeout.

        ``MySQLUnavailable``, a timeout and a cancellation abandon the connection;
        ``RowRefused`` leaves it open: only the refused statement was rolled back.
        """
        raw = self._raw
        if raw is None:
            raise MySQLUnavailable(self.address, "not connected")
        self._last_used = time.monotonic()
        timeout = self.config.mysql_read_timeout_s
        try:
            with trio.move_on_after(timeout) as scope, mysql_errors(self.address):
                return await aio(job, raw)
        except MySQLUnavailable:
            self.abandon()
            raise
        except BaseException as exc:
            if not isinstance(exc, Exception):
                self.abandon()  # cancelled mid-call: the protocol state is unknown
            raise
        assert scope.cancelled_caught
        self.abandon()
        raise MySQLUnavailable(self.address, f"no answer within {timeout:g} s", kind="connection")

    async def execute(self, sql: str) -> list[tuple[Any, ...]]:
        """Run one statement; return its rows (none for a statement that returns none)."""

        async def job(raw: Any) -> list[tuple[Any, ...]]:
            async with raw.cursor() as cur:
                await cur.execute(sql)
                return list(await cur.fetchall() or ())

        return await self.run(job)

    async def commit(self) -> None:
        """COMMIT. Any failure abandons the connection: the outcome is unknown until retried."""
        try:
            await self.run(lambda raw: raw.commit())
        except Exception:
            self.abandon()
            raise

    async def rollback(self) -> None:
        """ROLLBACK, best effort: a connection that can't is abandoned (the server rolls back)."""
        if self._raw is None:
            return
        with contextlib.suppress(MySQLUnavailable):
            await self.run(lambda raw: raw.rollback())


def _hard_close(raw: Any) -> None:
    """Close the driver's connection at once, TLS or not.

    The driver's own ``close`` closes its transport, which over TLS first sends close_notify
    and keeps the socket until the server answers: a loop that ends before then (the worker
    stopping) leaves the socket open for the garbage collector. ``abort`` closes it now."""
    transport = getattr(raw, "_transport", None)
    if transport is not None:
        transport.abort()
    raw.close()
