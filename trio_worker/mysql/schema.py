"""The tables: ``votes`` (the contract's schema), the ledger ``vote_batches`` and its horizon.

Only what is missing is created, on every (re)connect, so an account without CREATE rights works
on a schema made for it beforehand, and a table an operator dropped comes back.
"""

from __future__ import annotations

import logging

from trio_worker.errors import MySQLUnavailable
from trio_worker.mysql.codes import Code
from trio_worker.mysql.connection import Connection
from trio_worker.mysql.sql import quote

log = logging.getLogger("trio_worker.schema")

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
    refused TEXT NULL,
    INDEX idx_committed_at (committed_at)
) DEFAULT CHARSET=ascii
"""

# The ledger's horizon (one row): the rows of batches committed before it may have been pruned
# (``ledger.prune``), so a batch started before it is not committed again.
HORIZON_TABLE = """
CREATE TABLE IF NOT EXISTS vote_ledger_horizon (
    id TINYINT NOT NULL PRIMARY KEY,
    horizon TIMESTAMP(3) NOT NULL
)
"""

TABLES = (("votes", VOTES_TABLE), ("vote_batches", LEDGER_TABLE))
# Columns added to a table after its first release: (table, column, definition).
ADDED_COLUMNS = (("vote_batches", "refused", "TEXT NULL"),)


async def database_exists(conn: Connection, database: str) -> bool:
    found = await conn.execute(
        f"SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = {quote(database)}"
    )
    return int(found[0][0]) > 0


async def table_exists(conn: Connection, database: str, table: str) -> bool:
    found = await conn.execute(
        "SELECT COUNT(*) FROM information_schema.TABLES"
        f" WHERE TABLE_SCHEMA = {quote(database)} AND TABLE_NAME = {quote(table)}"
    )
    return int(found[0][0]) > 0


async def column_exists(conn: Connection, database: str, table: str, column: str) -> bool:
    found = await conn.execute(
        "SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA ="
        f" {quote(database)} AND TABLE_NAME = {quote(table)} AND COLUMN_NAME = {quote(column)}"
    )
    return int(found[0][0]) > 0


async def open_with_schema(conn: Connection, *, horizon: bool = True) -> None:
    """Connect, creating the database, the votes table and the ledger where missing (and the
    ledger's newer columns: an account without ALTER rights can add them beforehand).

    The ledger's horizon table came later: an account that may not create it (error 1142,
    a schema made beforehand by an administrator) still works, without it (``conn.horizon``
    False, one warning): as before it, workers that differ in LEDGER_RETENTION_S are then not
    safe together. An administrator creates it with ``HORIZON_TABLE``."""
    db = conn.config.mysql_database  # validated by config: needs no escaping as an identifier
    await conn.open(database=False)
    if not await database_exists(conn, db):
        await conn.execute(f"CREATE DATABASE IF NOT EXISTS `{db}`")
    await conn.execute(f"USE `{db}`")
    for table, ddl in TABLES:
        if not await table_exists(conn, db, table):
            await conn.execute(ddl)
    for table, column, definition in ADDED_COLUMNS:
        if not await column_exists(conn, db, table, column):
            await conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
    conn.horizon = await table_exists(conn, db, "vote_ledger_horizon")
    if not conn.horizon and horizon:
        try:
            await conn.execute(HORIZON_TABLE)
        except MySQLUnavailable as exc:
            if exc.kind != f"error {Code.TABLE_ACCESS_DENIED}":
                raise
            log.warning(
                "the ledger's horizon table vote_ledger_horizon is missing and this account may"
                " not create it: workers with different LEDGER_RETENTION_S are not safe"
                " together until an administrator creates it (docs/operations.md)",
                extra={"error": str(exc)},
            )
            await open_with_schema(conn, horizon=False)  # the refusal closed the connection
            return
        conn.horizon = True
    await conn.commit()


async def totals(conn: Connection, database: str) -> dict[str, int] | None:
    """Rows by vote, or None when the database or its votes table doesn't exist yet."""
    if not await table_exists(conn, database, "votes"):
        await conn.commit()
        return None
    rows = await conn.execute(
        f"SELECT vote, COUNT(*) FROM `{database}`.votes GROUP BY vote ORDER BY vote"
    )
    await conn.commit()
    return {str(v): int(n) for v, n in rows}
