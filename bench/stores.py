"""The local Redis and MariaDB: connections, a clean slate, the backlog, their processes."""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from typing import Any

import psutil
import pymysql
import redis

from bench.common import CAST_PER_S, DB, QUEUE, done_progress, progress, vote

# The one thing bench takes from the worker package: the votes table's DDL, so that the
# baselines insert into the same table the worker does.
from trio_worker.mysql.schema import VOTES_TABLE


@dataclass(frozen=True)
class Stores:
    redis_host: str
    redis_port: int
    mysql_host: str
    mysql_port: int
    mysql_user: str
    mysql_password: str
    # Where the MySQL servers themselves listen, when the bench connects through a proxy
    # (HAProxy in front of a Galera cluster), the one taking the writes first: "mariadb" is
    # that one's CPU, not the proxy's; the others and the proxy are measured too.
    mysql_server_ports: tuple[int, ...] = ()

    @classmethod
    def from_env(cls) -> Stores:
        """The same variables as the worker's, with the local defaults."""
        env = os.environ
        return cls(
            env.get("REDIS_HOST", "127.0.0.1"),
            int(env.get("REDIS_PORT", "6379")),
            env.get("MYSQL_HOST", "127.0.0.1"),
            int(env.get("MYSQL_PORT", "3306")),
            env.get("MYSQL_USER", "root"),
            env.get("MYSQL_PASSWORD", ""),
        )

    def sql(self, database: str | None = DB, *, autocommit: bool = True) -> Any:
        return pymysql.connect(
            host=self.mysql_host,
            port=self.mysql_port,
            user=self.mysql_user,
            password=self.mysql_password,
            database=database,
            autocommit=autocommit,
            charset="utf8mb4",
        )

    def redis(self) -> redis.Redis:
        return redis.Redis(host=self.redis_host, port=self.redis_port)


def reset(stores: Stores, *, table: bool = False) -> None:
    """An empty bench database (with ``votes`` when a baseline needs it) and no bench keys."""
    with contextlib.closing(stores.sql(None)) as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{DB}`")
        cur.execute(f"CREATE DATABASE `{DB}`")
        if table:
            cur.execute(f"USE `{DB}`")
            cur.execute(VOTES_TABLE)
    r = stores.redis()
    keys = list(r.scan_iter(match=f"{QUEUE}*", count=1000))
    if keys:
        r.delete(*keys)
    r.close()


def cleanup(stores: Stores) -> None:
    reset(stores)
    with contextlib.closing(stores.sql(None)) as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{DB}`")


def push_backlog(stores: Stores, n: int, prefix: str) -> None:
    """LPUSH ``n`` votes, as producers do, in pipelined chunks; they were cast at
    ``CAST_PER_S`` until now."""
    r = stores.redis()
    chunk = 10_000
    first = time.time() - n / CAST_PER_S
    for start in range(0, n, chunk):
        msgs = [
            vote(f"{prefix}{i}", i, first + i / CAST_PER_S)
            for i in range(start, min(n, start + chunk))
        ]
        r.lpush(QUEUE, *msgs)
        progress(f"  pushing backlog: {start + len(msgs):,}/{n:,}")
    done_progress()
    r.close()


def inflight_left(stores: Stores) -> int:
    """In-flight lists still holding votes: a clean stop leaves none."""
    r = stores.redis()
    left = [k for k in r.scan_iter(match=f"{QUEUE}:inflight:*") if r.llen(k)]
    r.close()
    return len(left)


def listeners(ports: dict[str, int]) -> dict[str, psutil.Process]:
    """The local processes listening on these ports (other Redis/MariaDB may be running)."""
    found: dict[str, psutil.Process] = {}
    with contextlib.suppress(psutil.Error):
        for conn in psutil.net_connections("tcp"):
            if conn.status != "LISTEN" or not conn.laddr or not conn.pid:  # laddr: () if none
                continue
            for name, port in ports.items():
                if conn.laddr.port == port:
                    found[name] = psutil.Process(conn.pid)
    return found


def servers(stores: Stores) -> dict[str, psutil.Process]:
    if not stores.mysql_server_ports:
        return listeners({"redis": stores.redis_port, "mariadb": stores.mysql_port})
    first, *others = stores.mysql_server_ports
    ports = {"redis": stores.redis_port, "mariadb": first, "proxy": stores.mysql_port}
    ports.update({f"mariadb-{k}": port for k, port in enumerate(others, 2)})
    return listeners(ports)


def server_versions(stores: Stores) -> dict[str, str]:
    with contextlib.closing(stores.sql(None)) as conn, conn.cursor() as cur:
        cur.execute("SELECT VERSION(), @@innodb_flush_log_at_trx_commit")
        version, flush = cur.fetchone()
    r = stores.redis()
    info = r.info("server")
    r.close()
    return {
        "mariadb": str(version),
        "innodb_flush_log_at_trx_commit": str(flush),
        "redis": str(info.get("redis_version")),
    }
