"""The MySQL store on its own: schema, ledger, values verbatim."""

from __future__ import annotations

import trio_asyncio

from tests.helpers import sql
from trio_worker.config import Config
from trio_worker.store import MySQLStore


async def test_ledger_rows_older_than_the_retention_are_pruned(config: Config) -> None:
    async with trio_asyncio.open_loop():
        store = MySQLStore(config)
        await store.ensure_schema()
        await store.execute(
            "INSERT INTO vote_batches (batch_id, votes, committed_at) VALUES "
            "('old', 1, NOW() - INTERVAL 2 DAY), ('new', 1, NOW())"
        )
        await store.commit()
        assert await store.prune_ledger(24 * 3600) == 1
        store.close()
    assert sql(config, "SELECT batch_id FROM vote_batches") == [("new",)]


async def test_a_batch_commits_once_however_often_it_is_tried(config: Config) -> None:
    rows = [("o'neil", "a", "2024-01-01 00:00:00"), ("x\\y\x00z", "b", "2024-01-01 00:00:01")]
    async with trio_asyncio.open_loop():
        store = MySQLStore(config)
        await store.ensure_schema()
        assert await store.commit_batch("b-1", rows) is True
        assert await store.commit_batch("b-1", rows) is False
        store.close()
    assert sql(config, "SELECT voter_id, vote FROM votes ORDER BY id") == [
        ("o'neil", "a"),
        ("x\\y\x00z", "b"),
    ]


async def test_schema_is_the_seeds_with_both_indexes(config: Config) -> None:
    async with trio_asyncio.open_loop():
        store = MySQLStore(config)
        await store.ensure_schema()
        await store.ensure_schema()  # idempotent
        store.close()
    columns = [r[0] for r in sql(config, "SHOW COLUMNS FROM votes")]
    assert columns == ["id", "vote", "voter_id", "timestamp", "created_at"]
    indexes = {r[2] for r in sql(config, "SHOW INDEX FROM votes")}
    assert indexes == {"PRIMARY", "idx_vote", "idx_timestamp"}


async def test_commit_batch_says_when_its_rows_are_in(config: Config) -> None:
    """The insert slot is taken before the packet goes and given back once the rows are in, and
    again (harmlessly) when the call ends; a batch committed before takes no rows."""
    rows = [("v1", "a", "2026-11-28 10:00:00"), ("v2", "b", "2026-11-28 10:00:00")]
    events: list[str] = []

    async def wait_to_insert() -> None:
        events.append("wait")

    async with trio_asyncio.open_loop():
        store = MySQLStore(config)
        await store.ensure_schema()

        def insert_done() -> None:
            events.append("done")

        try:
            first, again = (True, ["wait", "done", "done"]), (False, ["wait", "done"])
            for committed, expected in (first, again):
                events.clear()
                got = await store.commit_batch(
                    "b-9", rows, wait_to_insert=wait_to_insert, insert_done=insert_done
                )
                assert (got, events) == (committed, expected)
        finally:
            store.close()
    assert sql(config, "SELECT COUNT(*) FROM votes") == [(2,)]
