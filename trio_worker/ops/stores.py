"""Opening the stores for a one-shot operator command."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from trio_worker.config import Config
from trio_worker.loop import open_loop
from trio_worker.mysql.connection import Connection
from trio_worker.queue import Boundary, QueueAdmin


@asynccontextmanager
async def open_queue(config: Config) -> AsyncIterator[QueueAdmin]:
    """The asyncio loop both drivers need, and a Redis client on it (closed on the way out).

    MySQL connections (``open_mysql``) must be opened inside this block: they share the loop.
    """
    async with open_loop(fast_path=config.trio_asyncio_fast_path):
        boundary = Boundary.open(config, block_s=0)
        try:
            yield QueueAdmin(boundary, config)
        finally:
            with trio.CancelScope(shield=True):
                await boundary.aclose()


@asynccontextmanager
async def open_mysql(config: Config) -> AsyncIterator[Connection]:
    """A connection to the MySQL server with no database selected (it may not exist yet)."""
    # A Redis-only command's configuration holds MySQL defaults, not settings (from_env).
    assert config.mysql_configured, "the MySQL variables were not read for this command"
    conn = Connection(config)
    try:
        await conn.open(database=False)
        yield conn
    finally:
        conn.close()


def producer_push(config: Config) -> str:
    """The command a producer uses: the opposite end of the one the worker takes from."""
    return "RPUSH" if config.consume_from == "left" else "LPUSH"
