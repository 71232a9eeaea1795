"""``trio-worker check``: validate the configuration and reach both stores."""

from __future__ import annotations

from collections.abc import Callable

import trio

from trio_worker.config import Config
from trio_worker.errors import StoreUnavailable
from trio_worker.mysql.schema import database_exists
from trio_worker.ops.stores import open_mysql, open_queue

CHECK_TIMEOUT_S = 10.0

Report = Callable[[bool, str], None]
"""How a command reports one finding: ``report(ok, text)``."""


async def check(config: Config, report: Report) -> bool:
    """Reach both stores and report each; True if both answered.

    MySQL is checked at the server level: the database may not exist yet (``run`` creates it),
    so its absence is reported, not treated as a failure.
    """
    ok = True
    async with open_queue(config) as queue:
        with trio.move_on_after(CHECK_TIMEOUT_S) as scope:
            try:
                await queue.ping()
                report(True, f"Redis at {config.redis_address}: reachable")
            except StoreUnavailable as exc:
                report(False, str(exc))
                ok = False
        if scope.cancelled_caught:
            report(False, f"Redis at {config.redis_address}: timed out")
            ok = False
        with trio.move_on_after(CHECK_TIMEOUT_S) as scope:
            try:
                version, exists = await _mysql_server(config)
            except StoreUnavailable as exc:
                report(False, str(exc))
                ok = False
            else:
                db = config.mysql_database
                state = (
                    f"database {db!r} exists"
                    if exists
                    else f"database {db!r} does not exist yet (`trio-worker run` creates it)"
                )
                report(
                    True, f"MySQL at {config.mysql_address}: reachable (server {version}); {state}"
                )
        if scope.cancelled_caught:
            report(False, f"MySQL at {config.mysql_address}: timed out")
            ok = False
    return ok


async def _mysql_server(config: Config) -> tuple[str, bool]:
    """The server's version and whether the configured database exists."""
    async with open_mysql(config) as conn:
        version = (await conn.execute("SELECT VERSION()"))[0][0]
        exists = await database_exists(conn, config.mysql_database)
        await conn.commit()
    return str(version), exists
