"""The tables: ``votes`` (the contract's schema) and the ledger ``vote_batches``.

Only what is missing is created, on every (re)connect, so an account without CREATE rights works
on a schema made for it beforehand, and a table an operator dropped comes back.
"""

from __future__ import annotations

from trio_worker.mysql.connection import Connection
from trio_worker.mysql.sql import quote

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


async def open_with_schema(conn: Connection) -> None:
    """Connect, creating the database, the votes table and the ledger where missing (and the
    ledger's newer columns: an account without ALTER rights can add them beforehand)."""
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
