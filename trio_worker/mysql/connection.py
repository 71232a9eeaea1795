"""One MySQL connection: opened with the worker's session settings, used, closed hard.

Every call runs on the asyncio loop through ``run``, inside the error boundary
(``codes.mysql_errors``). A failure of the connection, or a cancellation mid-call (the protocol
state is then unknown), closes it; the owner opens a new one. Not shared between tasks.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncmy

from trio_worker.bridge import aio
from trio_worker.config import Config
from trio_worker.errors import MySQLUnavailable
from trio_worker.mysql.codes import mysql_errors
from trio_worker.mysql.sql import SESSION

T = TypeVar("T")

# Replaced when idle this long, before the session's wait_timeout (600 s) could cut it.
IDLE_RECONNECT_S = 500.0


class Connection:
    """An asyncmy connection, or none (``is_open`` False) until ``open`` succeeds."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.address = config.mysql_address
        self._raw: Any = None
        self._last_used = time.monotonic()

    @property
    def is_open(self) -> bool:
        return self._raw is not None

    def idle_too_long(self) -> bool:
        """Unused for so long that the server may have dropped it: better replaced."""
        return time.monotonic() - self._last_used > IDLE_RECONNECT_S

    async def open(self, *, database: bool = True) -> None:
        """(Re)connect, with or without the configured database selected."""
        self.close()
        c = self.config
        with mysql_errors(self.address):
            self._raw = await aio(
                asyncmy.connect,
                host=c.mysql_host,
                port=c.mysql_port,
                unix_socket=c.mysql_unix_socket,
                user=c.mysql_user,
                password=c.mysql_password,
                db=c.mysql_database if database else None,
                charset="utf8mb4",
                autocommit=False,
                connect_timeout=5,
            )
        self._last_used = time.monotonic()
        await self.execute(SESSION)

    def close(self) -> None:
        """A hard close: no QUIT round trip that could hang on a dead peer."""
        raw, self._raw = self._raw, None
        if raw is not None:
            raw.close()

    async def run(self, job: Callable[[Any], Awaitable[T]]) -> T:
        """Run ``job(raw_connection)`` on the asyncio loop, errors mapped.

        ``MySQLUnavailable`` (and a cancellation) close the connection; ``RowRefused`` leaves
        it open: only the refused statement was rolled back.
        """
        raw = self._raw
        if raw is None:
            raise MySQLUnavailable(self.address, "not connected")
        self._last_used = time.monotonic()
        try:
            with mysql_errors(self.address):
                return await aio(job, raw)
        except MySQLUnavailable:
            self.close()
            raise
        except BaseException as exc:
            if not isinstance(exc, Exception):
                self.close()  # cancelled mid-call: the protocol state is unknown
            raise

    async def execute(self, sql: str) -> list[tuple[Any, ...]]:
        """Run one statement; return its rows (none for a statement that returns none)."""

        async def job(raw: Any) -> list[tuple[Any, ...]]:
            async with raw.cursor() as cur:
                await cur.execute(sql)
                return list(await cur.fetchall() or ())

        return await self.run(job)

    async def commit(self) -> None:
        """COMMIT. Any failure closes the connection: the outcome is unknown until retried."""
        try:
            await self.run(lambda raw: raw.commit())
        except Exception:
            self.close()
            raise

    async def rollback(self) -> None:
        """ROLLBACK, best effort: a connection that can't is closed (the server rolls back)."""
        if self._raw is None:
            return
        with contextlib.suppress(MySQLUnavailable):
            await self.run(lambda raw: raw.rollback())
