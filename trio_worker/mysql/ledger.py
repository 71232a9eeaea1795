"""Committing a batch exactly once, through the ledger table ``vote_batches``.

A batch's transaction first inserts its id into ``vote_batches`` (primary key), then its rows.
If the batch was committed before, by us before a crash or a lost COMMIT reply, or by another
worker that took it over, the ledger insert fails with a duplicate key and nothing is inserted
twice. A transaction still open elsewhere for the same batch holds the ledger row's lock, so the
second one waits for it and then learns the outcome: there is no window for a double insert.

Ledger rows are pruned after ``LEDGER_RETENTION_S``, so the ledger can only vouch for batches
younger than that: the ledger insert carries the batch's age bounds, judged by the server's
clock, and a batch outside them is refused as stale (``StaleBatch``) rather than committed. The
rows MySQL refused in a batch committed in parts are recorded in its ledger row, so whoever
commits the batch again dead-letters exactly those.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from trio_worker.errors import MySQLUnavailable
from trio_worker.messages import Row
from trio_worker.mysql import sql
from trio_worker.mysql.clock import Bounds
from trio_worker.mysql.codes import Code, DuplicateEntry, RowRefused
from trio_worker.mysql.connection import Connection

# Room kept in each packet below the server's max_allowed_packet (the packet's own header,
# the statement separators).
_PACKET_SLACK = 1024


class BatchRejected(Exception):
    """MySQL refused a row of the batch (not the connection): commit it in parts instead."""


class StaleBatch(Exception):
    """The batch is older than the ledger can vouch for, and the ledger doesn't know it: it may
    have been committed and its ledger row pruned. It must not be committed."""


@dataclass(frozen=True)
class Committed:
    now: bool  # committed by this call; False: it was committed before
    refused: list[int] = field(default_factory=list)  # positions in rows MySQL refused


class InsertTurn(Protocol):
    """When a batch's rows may be sent, and when they are in (see ``pipeline.flusher``)."""

    async def take(self) -> None: ...

    def give_back(self) -> None: ...


def packets(ledger: str, rows: Sequence[Row], max_packet: int) -> list[tuple[str, list[str]]]:
    """The transaction's statements (ledger, rows, COMMIT) as multi-statement packets, each
    under ``max_packet`` bytes: ``(text, the kind of each statement in it)``.

    Almost always one packet; a batch whose text could exceed the server's limit has its rows
    split over several INSERTs, grouped into as few packets as fit.
    """
    limit = max_packet - min(_PACKET_SLACK, max_packet // 8)
    whole = f"{ledger};{sql.insert_votes(rows)};COMMIT"
    if 4 * len(whole) <= limit or len(whole.encode()) <= limit:
        return [(whole, ["ledger", "rows", "commit"])]
    votes = sql.values(rows)
    statements: list[tuple[str, str]] = [("ledger", ledger)]
    chunk: list[str] = []
    size = len(sql.VOTES_INSERT)
    for value in votes:
        grow = len(value.encode()) + 1
        if chunk and size + grow > limit:
            statements.append(("rows", sql.VOTES_INSERT + ",".join(chunk)))
            chunk, size = [], len(sql.VOTES_INSERT)
        chunk.append(value)
        size += grow
    statements += [("rows", sql.VOTES_INSERT + ",".join(chunk)), ("commit", "COMMIT")]
    grouped: list[tuple[str, list[str]]] = []
    texts: list[str] = []
    kinds: list[str] = []
    size = 0
    for kind, text in statements:
        grow = len(text.encode()) + 1
        if texts and size + grow > limit:
            grouped.append((";".join(texts), kinds))
            texts, kinds, size = [], [], 0
        texts.append(text)
        kinds.append(kind)
        size += grow
    grouped.append((";".join(texts), kinds))
    return grouped


async def commit(
    conn: Connection,
    batch_id: str,
    rows: Sequence[Row],
    turn: InsertTurn,
    fresh: Bounds | None = None,
) -> Committed:
    """Insert the ledger entry and the rows, and commit: one transaction, one round trip.

    Raises ``MySQLUnavailable`` (outcome unknown until retried), ``BatchRejected`` or
    ``StaleBatch``. ``fresh``: the ledger's age bounds (``sql.insert_ledger``).

    The statements go as multi-statement packets (asyncmy always allows them; every value is
    quoted under NO_BACKSLASH_ESCAPES, so none can end its literal early). The server runs them
    in order and stops at the first error: after a duplicate ledger key nothing else ran, and
    after a refused row the COMMIT did not run. ``turn`` is taken before the first packet goes
    and given back as soon as the rows are in, the COMMIT still running.
    """
    assert conn.server is not None
    plan = packets(
        sql.insert_ledger(batch_id, len(rows), fresh, horizon=conn.horizon),
        rows,
        conn.server.max_packet,
    )
    step = "ledger"

    async def transaction(raw: Any) -> None:
        # Runs on the asyncio loop: one hop from Trio, and (almost always) one round trip.
        nonlocal step
        async with raw.cursor() as cur:
            for text, kinds in plan:
                for i, kind in enumerate(kinds):
                    if kind == "commit":
                        turn.give_back()
                    step = kind
                    await (cur.execute(text) if i == 0 else cur.nextset())

    await turn.take()
    try:
        await conn.run(transaction)
    except RowRefused as exc:
        if step == "ledger":
            return await _ledger_refused(conn, batch_id, exc)
        if step == "rows":
            await conn.rollback()
            raise BatchRejected(str(exc)) from exc
        conn.abandon()
        raise MySQLUnavailable(conn.address, f"unexpected refusal at the {step} step") from exc
    finally:
        turn.give_back()
    return Committed(now=True)


async def _ledger_refused(conn: Connection, batch_id: str, exc: RowRefused) -> Committed:
    """The ledger row was refused (nothing after it ran): the session was reset, the batch was
    committed before (a duplicate key), or it is older than the ledger vouches for."""
    if exc.code == Code.BAD_NULL and "batch_id" in str(exc):
        conn.abandon()
        raise MySQLUnavailable(conn.address, "session settings were reset (a proxy?): reconnecting")
    if not (isinstance(exc, DuplicateEntry) or exc.code == Code.BAD_NULL):
        conn.abandon()
        raise MySQLUnavailable(conn.address, f"the ledger refused the batch ({exc})") from exc
    await conn.rollback()
    return await _known(conn, batch_id, stale=not isinstance(exc, DuplicateEntry))


async def _known(conn: Connection, batch_id: str, *, stale: bool) -> Committed:
    """The batch's ledger entry: committed before, with the rows it refused then. A stale
    batch the ledger doesn't know raises ``StaleBatch``; its row can only have been pruned."""
    found = await conn.execute(sql.ledger_entry(batch_id))
    await conn.commit()
    if not found:
        if stale:
            raise StaleBatch(batch_id)
        # The duplicate's row is gone already (pruned just now): it was committed.
        return Committed(now=False)
    refused = found[0][0]
    return Committed(
        now=False, refused=[int(p) for p in str(refused).split(",")] if refused else []
    )


async def commit_apart(
    conn: Connection,
    batch_id: str,
    rows: Sequence[Row],
    fresh: Bounds | None = None,
    *,
    step: Callable[[], object] = lambda: None,
) -> Committed:
    """The slow path after ``BatchRejected``: one transaction whose rows go in parts, a part
    MySQL refuses halved again down to the single rows it refuses. With k refused rows of N,
    about 2k·log2(N/k) statements, never more than 2N (one each for N rows used to be N + 3
    round trips however few were refused). ``step()`` before each statement: the progress a
    liveness probe sees. The positions of the refused rows are recorded in the ledger row, in
    the same transaction. A refused statement is rolled back alone; the transaction goes on.
    """
    assert conn.server is not None
    step()
    try:
        await conn.execute(sql.insert_ledger(batch_id, len(rows), fresh, horizon=conn.horizon))
    except RowRefused as exc:
        return await _ledger_refused(conn, batch_id, exc)
    refused: list[int] = []
    # The whole batch was refused already: start from its halves (or from what fits a packet).
    parts = _parts(rows, conn.server.max_packet)
    if len(parts) == 1 and len(rows) > 1:
        parts = [(0, len(rows) // 2), (len(rows) // 2, len(rows))]
    pending = parts[::-1]  # a stack: the first part on top
    while pending:
        start, end = pending.pop()
        step()
        try:
            await conn.execute(sql.insert_votes(rows[start:end]))
        except RowRefused:
            if end - start == 1:
                refused.append(start)
            else:
                middle = (start + end) // 2
                pending += [(middle, end), (start, middle)]
    if refused:
        step()
        await conn.execute(sql.set_refused(batch_id, refused))
    step()
    await conn.commit()
    return Committed(now=True, refused=refused)


def _parts(rows: Sequence[Row], max_packet: int) -> list[tuple[int, int]]:
    """``rows`` as consecutive (start, end) ranges whose INSERT fits a packet."""
    limit = max_packet - min(_PACKET_SLACK, max_packet // 8)
    parts: list[tuple[int, int]] = []
    start, size = 0, len(sql.VOTES_INSERT)
    for i, value in enumerate(sql.values(rows)):
        grow = len(value.encode()) + 1
        if i > start and size + grow > limit:
            parts.append((start, i))
            start, size = i, len(sql.VOTES_INSERT)
        size += grow
    if start < len(rows):
        parts.append((start, len(rows)))
    return parts


async def prune(
    conn: Connection, older_than_s: int, keep: Sequence[str] = (), limit: int = 10_000
) -> int:
    """Forget ledger rows older than ``older_than_s``, never those of the batches ``keep`` (a
    list of theirs may still be in Redis); return how many went.

    Workers may differ in LEDGER_RETENTION_S (a rolling change), and a worker paused past the
    shortest of them must not commit a batch whose row a shorter one pruned. So pruning goes
    through the ledger's horizon (``vote_ledger_horizon``): a pass deletes only rows older than
    the horizon a pass published before, then raises it to ``older_than_s`` ago. A batch's
    ledger insert is refused (``sql.insert_ledger``) once the batch started before the horizon:
    by the time a row goes, every commit sees a horizon past it.
    """
    deleted = 0
    while True:

        async def job(raw: Any) -> int:
            async with raw.cursor() as cur:
                statement = sql.prune_ledger(older_than_s, limit, keep, horizon=conn.horizon)
                return int(await cur.execute(statement))

        went = await conn.run(job)
        await conn.commit()
        deleted += went
        if went < limit:
            break
    if conn.horizon:
        await conn.execute(sql.raise_horizon(older_than_s))
        await conn.commit()
    return deleted
