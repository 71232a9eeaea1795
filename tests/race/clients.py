"""Plain synchronous clients of the race's own stores (never the worker's code paths), run in
threads from Trio."""

from __future__ import annotations

import json
from typing import Any

import pymysql
import redis

from tests.support.servers import OwnStores


class Clients:
    def __init__(self, stores: OwnStores) -> None:
        self.stores = stores

    def redis(self, name: str) -> redis.Redis:
        """A client named ``name``: redis_client_kill only kills the workers' unnamed ones."""
        return redis.Redis(
            port=self.stores.redis.port,
            client_name=name,
            socket_timeout=10,
            socket_connect_timeout=5,
        )

    def llen(self, key: str) -> int | None:
        """The length of a list (None: Redis can't say now: restarting)."""
        client = self.redis("faults")
        try:
            return int(client.llen(key))
        except redis.RedisError:
            return None
        finally:
            client.close()

    def letters_from(self, key: str, start: int) -> list[dict[str, Any]] | None:
        """The dead letters pushed to ``key`` from position ``start`` on, as JSON objects (an
        unreadable one as {}: the checker judges those); None: Redis can't say now."""
        client = self.redis("faults")
        try:
            raws = client.lrange(key, start, -1)
        except redis.RedisError:
            return None
        finally:
            client.close()
        docs: list[dict[str, Any]] = []
        for raw in raws:
            try:
                doc = json.loads(as_bytes(raw))
            except ValueError:
                doc = {}
            docs.append(doc if isinstance(doc, dict) else {})
        return docs

    def sql(self, query: str, database: str | None = None) -> list[tuple[Any, ...]]:
        conn = pymysql.connect(
            host="127.0.0.1",
            port=self.stores.mysql.port,
            user="root",
            database=database,
            autocommit=True,
            charset="utf8mb4",
            connect_timeout=5,
        )
        try:
            with conn.cursor() as cur:
                cur.execute(query)
                return list(cur.fetchall())
        finally:
            conn.close()

    def session_of(self, port: int) -> int | None:
        """The server's id for the session whose client socket is ``127.0.0.1:<port>`` (None:
        there is none, or the server can't say now)."""
        try:
            rows = self.sql(
                f"SELECT ID FROM information_schema.PROCESSLIST WHERE HOST = '127.0.0.1:{port}'"
            )
        except pymysql.err.MySQLError:
            return None
        return int(rows[0][0]) if rows else None

    def kills(self) -> int | None:
        """KILL statements the server has run since it started (None: it can't say now)."""
        try:
            rows = self.sql("SHOW GLOBAL STATUS LIKE 'Com_kill'")
        except pymysql.err.MySQLError:
            return None
        return int(rows[0][1]) if rows else None

    def session_alive(self, session: int) -> bool | None:
        """Whether the server still has this MySQL session (None: it can't say now: restarting)."""
        try:
            rows = self.sql(
                f"SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = {session}"
            )
        except pymysql.err.MySQLError:
            return None
        return bool(rows and rows[0][0])


def as_bytes(value: bytes | str) -> bytes:
    """redis-py's replies (bytes, as these clients don't decode), typed as such."""
    return value if isinstance(value, bytes) else value.encode()
