"""Committing a batch exactly once, through the ledger table ``vote_batches``.

A batch's transaction first inserts its id into ``vote_batches`` (primary key), then its rows.
If the batch was committed before, by us before a crash or a lost COMMIT reply, or by another
worker that took it over, the ledger insert fails with a duplicate key and nothing is inserted
twice. A transaction still open elsewhere for the same batch holds the ledger row's lock, so the
second one waits for it and then learns the outcome: there is no window for a double insert.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from trio_worker.errors import MySQLUnavailable
from trio_worker.messages import Row
from trio_worker.mysql import sql
from trio_worker.mysql.codes import DuplicateEntry, RowRefused
from trio_worker.mysql.connection import Connection


class BatchRejected(Exception):
    """MySQL refused a row of the batch (not the connection): commit it row by row instead."""


class InsertTurn(Protocol):
    """When a batch's rows may be sent, and when they are in (see ``pipeline.flusher``)."""

    async def take(self) -> None: ...

    def give_back(self) -> None: ...


async def commit(conn: Connection, batch_id: str, rows: Sequence[Row], turn: InsertTurn) -> bool:
    """Insert the ledger entry and the rows, and commit: one transaction, one round trip.

    True if this call committed them, False if the batch was committed before. Raises
    ``MySQLUnavailable`` (outcome unknown until retried) or ``BatchRejected``.

    The three statements go as one multi-statement packet (asyncmy always allows them; every
    value is quoted under NO_BACKSLASH_ESCAPES, so none can end its literal early). The server
    runs them in order and stops at the first error: after a duplicate ledger key nothing else
    ran, and after a refused row the COMMIT did not run. ``turn`` is taken before the packet
    goes and given back as soon as the rows are in, the COMMIT still running.
    """
    packet = ";".join((sql.insert_ledger(batch_id, len(rows)), sql.insert_votes(rows), "COMMIT"))
    step = "ledger"

    async def transaction(raw: Any) -> None:
        # Runs on the asyncio loop: one hop from Trio and one round trip for the batch (the
        # hops and round trips, not MariaDB, dominated a small batch's commit time).
        nonlocal step
        async with raw.cursor() as cur:
            await cur.execute(packet)
            step = "rows"
            await cur.nextset()
            turn.give_back()
            step = "commit"
            await cur.nextset()

    await turn.take()
    try:
        await conn.run(transaction)
    except RowRefused as exc:
        if step == "ledger" and isinstance(exc, DuplicateEntry):
            await conn.rollback()
            return False
        if step == "rows":
            await conn.rollback()
            raise BatchRejected(str(exc)) from exc
        raise _unknown_outcome(conn, step) from exc
    finally:
        turn.give_back()
    return True


def _unknown_outcome(conn: Connection, step: str) -> MySQLUnavailable:
    conn.close()
    return MySQLUnavailable(conn.address, f"unexpected refusal at the {step} step")


async def commit_row_by_row(
    conn: Connection, batch_id: str, rows: Sequence[Row]
) -> tuple[bool, list[int]]:
    """The slow path after ``BatchRejected``: one transaction, each row its own statement.

    Returns (committed now, indexes of the rows MySQL refused); a refused row is not stored.
    """
    try:
        await conn.execute(sql.insert_ledger(batch_id, len(rows)))
    except DuplicateEntry:
        await conn.rollback()
        return False, []
    refused: list[int] = []
    for i, row in enumerate(rows):
        try:
            await conn.execute(sql.insert_votes([row]))
        except RowRefused:
            # A failed statement is rolled back alone; the transaction goes on.
            refused.append(i)
    await conn.commit()
    return True, refused


async def prune(conn: Connection, older_than_s: int, limit: int = 10_000) -> int:
    """Forget ledger rows older than ``older_than_s``; return how many went.

    A batch id must outlive every copy of its batch: the in-flight list (gone once finished)
    and a paused worker's memory.
    """

    async def job(raw: Any) -> int:
        async with raw.cursor() as cur:
            return int(await cur.execute(sql.prune_ledger(older_than_s, limit)))

    deleted = await conn.run(job)
    await conn.commit()
    return deleted
