"""Faults on the stores themselves: a killed MySQL session or Redis client, a restarted server."""

from __future__ import annotations

import random
import signal
from typing import TYPE_CHECKING

import pymysql
import redis
import trio

if TYPE_CHECKING:
    from tests.race.run import Run


async def mysql_kill(run: Run, rng: random.Random) -> bool:
    """KILL one of the workers' sessions."""
    try:
        rows = await trio.to_thread.run_sync(
            run.clients.sql,
            "SELECT ID FROM information_schema.PROCESSLIST "
            f"WHERE DB = '{run.config.mysql_database}' AND ID <> CONNECTION_ID()",
        )
    except pymysql.err.MySQLError:
        return False  # MariaDB is being restarted by another fault
    if not rows:
        return False
    victim = rng.choice(sorted(int(r[0]) for r in rows))
    run.killed_sessions.add(victim)
    run.kills_issued += 1
    run.report.note(f"mysql KILL {victim}")
    try:
        await trio.to_thread.run_sync(run.clients.sql, f"KILL {victim}")
    except pymysql.err.MySQLError:
        return False
    return True


async def redis_client_kill(run: Run, rng: random.Random) -> bool:
    """CLIENT KILL one of the workers' connections (theirs are the unnamed ones)."""
    client = run.clients.redis("faults")
    try:
        clients = await trio.to_thread.run_sync(client.client_list)
        victims = sorted(int(c["id"]) for c in clients if not c.get("name"))
        if not victims:
            return False
        victim = rng.choice(victims)
        run.report.note(f"redis CLIENT KILL ID {victim}")
        await trio.to_thread.run_sync(lambda: client.client_kill_filter(_id=str(victim)))
    except redis.RedisError:
        return False
    finally:
        client.close()
    return True


async def restart_redis(run: Run, rng: random.Random) -> bool:
    """SIGKILL the race's redis-server, down 0.2-2 s (its append-only file keeps every
    acknowledged write); producers hold their pushes meanwhile."""
    if run.restarting["redis"].locked():
        return False
    async with run.restarting["redis"]:
        down = rng.uniform(0.2, 2.0)
        run.report.note(f"restart own redis (SIGKILL, down {down:.1f}s)")
        async with run.producers.held():
            await run.clients.stores.redis.restart(signal.SIGKILL, down)
        run.report.note("restart_redis done")
    return True


async def restart_mariadb(run: Run, rng: random.Random) -> bool:
    """SIGTERM the race's mariadbd, down 0.2-2 s (durable commits survive it)."""
    if run.restarting["mariadb"].locked():
        return False
    async with run.restarting["mariadb"]:
        down = rng.uniform(0.2, 2.0)
        run.report.note(f"restart own mariadb (SIGTERM, down {down:.1f}s)")
        await run.clients.stores.mysql.restart(signal.SIGTERM, down)
        run.report.note("restart_mariadb done")
    return True


FAULTS = {
    "mysql_kill": mysql_kill,
    "redis_client_kill": redis_client_kill,
    "restart_redis": restart_redis,
    "restart_mariadb": restart_mariadb,
}
