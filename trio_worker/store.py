"""The MySQL side: schema, and committing a batch exactly once through the ledger.

A batch's transaction first inserts its id into ``vote_batches`` (primary key), then its rows.
If the batch was committed before, by us before a crash or a lost COMMIT reply, or by another
worker that took it over, the ledger insert fails with a duplicate key and nothing is inserted
twice. A transaction still open elsewhere for the same batch holds the ledger row's lock, so the
second one waits for it and then learns the outcome: there is no window for a double insert.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncmy
import asyncmy.errors

from trio_worker.bridge import MySQLUnavailable, aio, describe
from trio_worker.config import Config
from trio_worker.messages import Row

VOTES_TABLE = """
CREATE TABLE IF NOT EXISTS votes (
    id INT AUTO_INCREMENT PRIMARY KEY,
    vote VARCHAR(10) NOT NULL,
    voter_id VARCHAR(255) NOT NULL,
    timestamp DATETIME NOT NULL,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    INDEX idx_vote (vote),
    INDEX idx_timestamp (timestamp)
) DEFAULT CHARSET=utf8mb4
"""

LEDGER_TABLE = """
CREATE TABLE IF NOT EXISTS vote_batches (
    batch_id VARCHAR(64) NOT NULL PRIMARY KEY,
    votes INT NOT NULL,
    committed_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    INDEX idx_committed_at (committed_at)
) DEFAULT CHARSET=ascii
"""

# Quotes are the only character to escape under NO_BACKSLASH_ESCAPES, which we set on every
# connection: values go into SQL verbatim and can never end a string literal early.
# wait_timeout: if a worker dies where the server can't see it (a network partition), its open
# transaction, and the ledger row lock that makes another worker wait for the same batch, go
# after this long rather than the server's default of 8 hours. Idle connections are replaced
# before that (IDLE_RECONNECT_S) so it never cuts a healthy worker.
WAIT_TIMEOUT_S = 600
IDLE_RECONNECT_S = 500.0
SESSION = (
    "SET SESSION sql_mode='STRICT_ALL_TABLES,NO_BACKSLASH_ESCAPES,NO_ENGINE_SUBSTITUTION',"
    f" time_zone='+00:00', innodb_lock_wait_timeout=10, wait_timeout={WAIT_TIMEOUT_S}"
)

_DUPLICATE_KEY = 1062
# Errors that say the connection, not the statement, failed: reconnect and try again.
_CONNECTION_ERRORS = {
    1040,
    1043,
    1047,
    1053,
    1077,
    1152,
    1153,
    1158,
    1159,
    1160,
    1161,
    1205,
    1213,
    1927,
    2002,
    2003,
    2006,
    2013,
    2014,
    2055,
    4031,
}


class BatchRejected(Exception):
    """MySQL refused the batch's rows themselves (not the connection): fall back to row by row."""


def quote(text: str) -> str:
    if "'" in text:
        text = text.replace("'", "''")
    return f"'{text}'"


def values_sql(rows: Sequence[Row]) -> str:
    """``INSERT`` text for rows whose values are already validated strings."""
    return "INSERT INTO votes (voter_id, vote, timestamp) VALUES " + ",".join(
        [f"({quote(v)},{quote(c)},'{t}')" for v, c, t in rows]
    )


def _ledger_sql(batch_id: str, count: int) -> str:
    return f"INSERT INTO vote_batches (batch_id, votes) VALUES ({quote(batch_id)}, {count})"


def _is_connection_error(exc: BaseException) -> bool:
    if isinstance(exc, asyncmy.errors.OperationalError | asyncmy.errors.InterfaceError):
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
        return code is None or code in _CONNECTION_ERRORS or code >= 2000
    return isinstance(exc, OSError | EOFError | ConnectionError | AttributeError | RuntimeError)


# Errors that blame a row's values (too long, a character the column's charset lacks, a bad
# date): that row can't be stored, the others can. Anything else (a missing table, a revoked
# right) is the schema's or the account's problem, and no vote should be dead-lettered for it.
_ROW_ERRORS = {1048, 1264, 1265, 1292, 1300, 1364, 1366, 1367, 1406}


def _is_row_error(exc: BaseException) -> bool:
    return _code(exc) in _ROW_ERRORS


def _code(exc: BaseException) -> int | None:
    return exc.args[0] if exc.args and isinstance(exc.args[0], int) else None


class MySQLStore:
    """One MySQL connection; ``None`` until ``connect`` succeeds. Not shared between tasks."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.address = config.mysql_address
        self._conn: Any = None
        self._last_used = time.monotonic()

    @property
    def connected(self) -> bool:
        """Connected, and not idle so long that the server may have dropped us."""
        if self._conn is not None and time.monotonic() - self._last_used > IDLE_RECONNECT_S:
            self.close()
        return self._conn is not None

    async def connect(self, *, use_database: bool = True) -> None:
        self.close()
        c = self.config
        try:
            conn = await aio(
                asyncmy.connect,
                host=c.mysql_host,
                port=c.mysql_port,
                user=c.mysql_user,
                password=c.mysql_password,
                db=c.mysql_database if use_database else None,
                charset="utf8mb4",
                autocommit=False,
                connect_timeout=5,
            )
        except Exception as exc:
            raise MySQLUnavailable(self.address, describe(exc)) from exc
        self._conn = conn
        await self.execute(SESSION)

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            # A hard close: no QUIT round trip that could hang on a dead peer.
            conn.close()

    async def execute(self, sql: str) -> list[tuple[Any, ...]]:
        """Run one statement. A connection failure closes the connection: MySQLUnavailable."""
        if self._conn is None:
            raise MySQLUnavailable(self.address, "not connected")
        self._last_used = time.monotonic()
        try:
            async with self._conn.cursor() as cur:
                await aio(cur.execute, sql)
                rows: list[tuple[Any, ...]] = list(await aio(cur.fetchall) or ())
                return rows
        except Exception as exc:
            if _is_connection_error(exc):
                self.close()
                raise MySQLUnavailable(self.address, describe(exc)) from exc
            raise
        except BaseException:
            # Cancelled mid-statement: the protocol state is unknown, so the connection goes.
            self.close()
            raise

    async def commit(self) -> None:
        if self._conn is None:
            raise MySQLUnavailable(self.address, "not connected")
        try:
            await aio(self._conn.commit)
        except Exception as exc:
            self.close()
            raise MySQLUnavailable(self.address, describe(exc)) from exc
        except BaseException:
            self.close()
            raise

    async def rollback(self) -> None:
        if self._conn is None:
            return
        try:
            await aio(self._conn.rollback)
        except Exception:
            self.close()

    async def ensure_schema(self) -> None:
        """Connect, creating the database, the votes table and the ledger where missing.

        Only what is missing is created, so an account without CREATE rights works on a schema
        made for it beforehand.
        """
        db = self.config.mysql_database  # validated: needs no escaping
        await self.connect(use_database=False)
        if not await self.execute(
            f"SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '{db}'"
        ):
            await self.execute(f"CREATE DATABASE IF NOT EXISTS `{db}`")
        await self.execute(f"USE `{db}`")
        for table, ddl in (("votes", VOTES_TABLE), ("vote_batches", LEDGER_TABLE)):
            found = await self.execute(
                "SELECT 1 FROM information_schema.TABLES"
                f" WHERE TABLE_SCHEMA = '{db}' AND TABLE_NAME = '{table}'"
            )
            if not found:
                await self.execute(ddl)
        await self.commit()

    async def _claim_batch(self, batch_id: str, count: int) -> bool:
        """Insert the ledger row; False if the batch is committed already."""
        try:
            await self.execute(_ledger_sql(batch_id, count))
        except asyncmy.errors.IntegrityError as exc:
            if _code(exc) == _DUPLICATE_KEY:
                await self.rollback()
                return False
            raise
        return True

    async def commit_batch(
        self,
        batch_id: str,
        rows: Sequence[Row],
        *,
        wait_to_insert: Callable[[], Awaitable[None]] | None = None,
        insert_done: Callable[[], None] | None = None,
    ) -> bool:
        """Insert the ledger entry and the rows, and commit: one transaction, one round trip.

        True if this call committed them, False if the batch was committed before. Raises
        ``MySQLUnavailable`` (outcome unknown until retried) or ``BatchRejected``.

        The three statements go as one multi-statement packet (asyncmy always allows them; every
        value is quoted under NO_BACKSLASH_ESCAPES, so none can end its literal early). The server
        runs them in order and stops at the first error: after a duplicate ledger key nothing
        else ran, and after a refused row the COMMIT did not run.
        """
        conn = self._conn
        if conn is None:
            raise MySQLUnavailable(self.address, "not connected")
        sql = ";".join((_ledger_sql(batch_id, len(rows)), values_sql(rows), "COMMIT"))
        step = "ledger"
        self._last_used = time.monotonic()

        async def transaction() -> bool:
            # Runs on the asyncio loop: one hop from Trio and one round trip for the batch (the
            # hops and round trips, not MariaDB, dominated a small batch's commit time).
            nonlocal step
            async with conn.cursor() as cur:
                try:
                    await cur.execute(sql)
                except asyncmy.errors.IntegrityError as exc:
                    if _code(exc) == _DUPLICATE_KEY:
                        return False
                    raise
                step = "rows"
                await cur.nextset()
                if insert_done is not None:
                    insert_done()
                step = "commit"
                await cur.nextset()
            return True

        if wait_to_insert is not None:
            await wait_to_insert()
        try:
            committed = await aio(transaction)
        except Exception as exc:
            if step == "commit" or _is_connection_error(exc):
                self.close()
                raise MySQLUnavailable(self.address, describe(exc)) from exc
            await self.rollback()
            if step == "rows" and _is_row_error(exc):
                raise BatchRejected(describe(exc)) from exc
            raise
        except BaseException:
            # Cancelled mid-transaction: the protocol state is unknown, so the connection goes.
            self.close()
            raise
        finally:
            if insert_done is not None:
                insert_done()
        if not committed:
            await self.rollback()
        return committed

    async def commit_rows_one_by_one(
        self, batch_id: str, rows: Sequence[Row]
    ) -> tuple[bool, list[int]]:
        """The slow path after ``BatchRejected``: one transaction, each row its own statement.

        Returns (committed now, indexes of the rows MySQL refused); a refused row is not stored.
        """
        if not await self._claim_batch(batch_id, len(rows)):
            return False, []
        refused: list[int] = []
        for i, row in enumerate(rows):
            try:
                await self.execute(values_sql([row]))
            except Exception as exc:
                if not _is_row_error(exc):
                    await self.rollback()
                    raise
                # A failed statement is rolled back alone; the transaction goes on.
                refused.append(i)
        await self.commit()
        return True, refused

    async def prune_ledger(self, older_than_s: int, limit: int = 10_000) -> int:
        """Forget ledger rows older than ``older_than_s``; return how many went.

        A batch id must outlive every copy of its batch: the in-flight list (gone once finished)
        and a paused worker's memory. A day is far beyond any heartbeat takeover.
        """
        sql = (
            "DELETE FROM vote_batches WHERE committed_at < "
            f"NOW() - INTERVAL {int(older_than_s)} SECOND LIMIT {int(limit)}"
        )
        if self._conn is None:
            raise MySQLUnavailable(self.address, "not connected")
        try:
            async with self._conn.cursor() as cur:
                deleted = int(await aio(cur.execute, sql))
        except Exception as exc:
            self.close()
            raise MySQLUnavailable(self.address, describe(exc)) from exc
        await self.commit()
        return deleted

    async def totals(self) -> dict[str, int]:
        rows = await self.execute("SELECT vote, COUNT(*) FROM votes GROUP BY vote ORDER BY vote")
        await self.commit()
        return {str(v): int(n) for v, n in rows}

    async def ping(self) -> None:
        await self.execute("SELECT 1")
        await self.commit()
