"""The MySQL side on its own: schema, ledger, values verbatim."""

from __future__ import annotations

import trio_asyncio

from tests.helpers import sql
from trio_worker.config import Config
from trio_worker.mysql import ledger
from trio_worker.mysql.connection import Connection
from trio_worker.mysql.schema import open_with_schema


class Turn:
    """An insert turn that records when it is taken and given back."""

    def __init__(self) -> None:
        self.events: list[str] = []

    async def take(self) -> None:
        self.events.append("take")

    def give_back(self) -> None:
        self.events.append("give back")


async def test_ledger_rows_older_than_the_retention_are_pruned(config: Config) -> None:
    async with trio_asyncio.open_loop():
        conn = Connection(config)
        await open_with_schema(conn)
        await conn.execute(
            "INSERT INTO vote_batches (batch_id, votes, committed_at) VALUES "
            "('old', 1, NOW() - INTERVAL 2 DAY), ('new', 1, NOW())"
        )
        await conn.commit()
        assert await ledger.prune(conn, 24 * 3600) == 1
        conn.close()
    assert sql(config, "SELECT batch_id FROM vote_batches") == [("new",)]


async def test_a_batch_commits_once_however_often_it_is_tried(config: Config) -> None:
    rows = [("o'neil", "a", "2024-01-01 00:00:00"), ("x\\y\x00z", "b", "2024-01-01 00:00:01")]
    async with trio_asyncio.open_loop():
        conn = Connection(config)
        await open_with_schema(conn)
        assert await ledger.commit(conn, "b-1", rows, Turn()) is True
        assert await ledger.commit(conn, "b-1", rows, Turn()) is False
        conn.close()
    assert sql(config, "SELECT voter_id, vote FROM votes ORDER BY id") == [
        ("o'neil", "a"),
        ("x\\y\x00z", "b"),
    ]


async def test_schema_is_the_seeds_with_both_indexes(config: Config) -> None:
    async with trio_asyncio.open_loop():
        conn = Connection(config)
        await open_with_schema(conn)
        await open_with_schema(conn)  # idempotent
        conn.close()
    columns = [r[0] for r in sql(config, "SHOW COLUMNS FROM votes")]
    assert columns == ["id", "vote", "voter_id", "timestamp", "created_at"]
    indexes = {r[2] for r in sql(config, "SHOW INDEX FROM votes")}
    assert indexes == {"PRIMARY", "idx_vote", "idx_timestamp"}


async def test_commit_says_when_its_rows_are_in(config: Config) -> None:
    """The insert turn is taken before the packet goes and given back once the rows are in, and
    again (harmlessly) when the call ends; a batch committed before takes no rows."""
    rows = [("v1", "a", "2026-11-28 10:00:00"), ("v2", "b", "2026-11-28 10:00:00")]
    async with trio_asyncio.open_loop():
        conn = Connection(config)
        await open_with_schema(conn)
        try:
            first, again = Turn(), Turn()
            assert await ledger.commit(conn, "b-9", rows, first) is True
            assert first.events == ["take", "give back", "give back"]
            assert await ledger.commit(conn, "b-9", rows, again) is False
            assert again.events == ["take", "give back"]
        finally:
            conn.close()
    assert sql(config, "SELECT COUNT(*) FROM votes") == [(2,)]
