"""The MySQL side on its own: schema, ledger, values verbatim."""

from __future__ import annotations

import pytest
import trio
import trio_asyncio
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.stores import admin_sql, sql
from trio_worker.config import Config
from trio_worker.errors import MySQLUnavailable
from trio_worker.mysql import ledger
from trio_worker.mysql import sql as sqltext
from trio_worker.mysql.clock import Bounds, fresh_bounds
from trio_worker.mysql.connection import Connection
from trio_worker.mysql.schema import VOTES_TABLE, open_with_schema


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
        # The first pass publishes the ledger's horizon; rows go at the next one.
        assert await ledger.prune(conn, 24 * 3600) == 0
        assert await ledger.prune(conn, 24 * 3600) == 1
        conn.close()
    assert sql(config, "SELECT batch_id FROM vote_batches") == [("new",)]


async def test_a_batch_commits_once_however_often_it_is_tried(config: Config) -> None:
    rows = [("o'neil", "a", "2024-01-01 00:00:00"), ("x\\y\x00z", "b", "2024-01-01 00:00:01")]
    async with trio_asyncio.open_loop():
        conn = Connection(config)
        await open_with_schema(conn)
        assert await ledger.commit(conn, "b-1", rows, Turn()) == ledger.Committed(now=True)
        assert await ledger.commit(conn, "b-1", rows, Turn()) == ledger.Committed(now=False)
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
            assert (await ledger.commit(conn, "b-9", rows, first)).now is True
            assert first.events == ["take", "give back", "give back"]
            assert (await ledger.commit(conn, "b-9", rows, again)).now is False
            assert again.events == ["take", "give back"]
        finally:
            conn.close()
    assert sql(config, "SELECT COUNT(*) FROM votes") == [(2,)]


async def open_conn(config: Config) -> Connection:
    conn = Connection(config)
    await open_with_schema(conn)
    return conn


def test_a_batch_over_the_servers_packet_limit_is_split_into_packets_under_it() -> None:
    rows = [(f"{i:03d}" + "v" * 250, "a", "2026-11-29 10:00:00") for i in range(1000)]
    ledger_sql = "INSERT INTO vote_batches (batch_id, votes) VALUES ('b', 1000)"
    assert ledger.packets(ledger_sql, rows[:3], 1 << 24) == [
        (f"{ledger_sql};{sqltext.insert_votes(rows[:3])};COMMIT", ["ledger", "rows", "commit"])
    ]
    plan = ledger.packets(ledger_sql, rows, 64 << 10)
    assert len(plan) > 4
    assert all(len(text.encode()) <= 64 << 10 for text, _ in plan)
    kinds = [kind for _, packet_kinds in plan for kind in packet_kinds]
    assert (kinds[0], kinds[-1], set(kinds[1:-1])) == ("ledger", "commit", {"rows"})
    statements = [s for text, _ in plan for s in text.split(";")]
    stored = "".join(s.removeprefix(sqltext.VOTES_INSERT) + "," for s in statements[1:-1])
    assert stored == "".join(v + "," for v in sqltext.values(rows))  # every row once, in order


async def test_a_stale_batch_is_refused_unless_the_ledger_knows_it(config: Config) -> None:
    """The ledger insert carries the batch's age bounds on the server's clock: past them a
    batch the ledger doesn't know is refused (its row may have been pruned); one it knows is
    recognised as committed."""
    rows = [("v1", "a", "2026-11-28 10:00:00")]
    past = Bounds(1000.0, 2000.0, 1000.0)  # 1970: long before the ledger can vouch
    async with trio_asyncio.open_loop():
        conn = await open_conn(config)
        try:
            with pytest.raises(ledger.StaleBatch):
                await ledger.commit(conn, "old-1", rows, Turn(), past)
            with pytest.raises(ledger.StaleBatch):
                await ledger.commit_apart(conn, "old-1", rows, past)
            assert (await ledger.commit(conn, "new-1", rows, Turn(), None)).now is True
            assert await ledger.commit(conn, "new-1", rows, Turn(), past) == ledger.Committed(
                now=False
            )
            now = (await conn.execute("SELECT UNIX_TIMESTAMP(NOW(3))"))[0][0]
            fresh = Bounds(float(now) - 5, float(now) + 5, float(now) - 5)
            assert (await ledger.commit(conn, "fresh-1", rows, Turn(), fresh)).now is True
        finally:
            conn.close()
    assert sql_rows(config) == [("v1",), ("v1",)]


def sql_rows(config: Config) -> list[tuple[object, ...]]:
    return sql(config, "SELECT voter_id FROM votes ORDER BY id")


async def test_refused_rows_are_recorded_so_a_retry_dead_letters_exactly_those(
    config: Config,
) -> None:
    """Regression: after the row-by-row fallback committed and its reply was lost, the retry
    hit the duplicate ledger key and never learnt which rows MySQL had refused."""
    db = config.mysql_database
    latin1 = VOTES_TABLE.split("votes", 1)[1].replace("utf8mb4", "latin1")
    admin_sql(config, f"CREATE DATABASE `{db}`", f"CREATE TABLE `{db}`.votes {latin1}")
    rows = [("plain", "a", "2026-11-28 10:00:00"), ("smile \U0001f600", "a", "2026-11-28 10:00:00")]
    async with trio_asyncio.open_loop():
        conn = await open_conn(config)
        try:
            with pytest.raises(ledger.BatchRejected):
                await ledger.commit(conn, "b-7", rows, Turn())
            assert await ledger.commit_apart(conn, "b-7", rows) == ledger.Committed(
                now=True, refused=[1]
            )
            # The reply was lost: the retry learns the outcome, and which rows were refused.
            assert await ledger.commit(conn, "b-7", rows, Turn()) == ledger.Committed(
                now=False, refused=[1]
            )
        finally:
            conn.close()
    assert sql_rows(config) == [("plain",)]


async def test_a_session_whose_settings_were_reset_is_never_used_for_a_batch(
    config: Config,
) -> None:
    """A proxy or pooler that resets session state (sql_mode, autocommit) would make the quote
    doubling unsafe and split the one-transaction batch: the flags are checked first."""
    rows = [("back\\slash' quote", "a", "2026-11-28 10:00:00")]
    async with trio_asyncio.open_loop():
        conn = await open_conn(config)
        try:
            await conn.execute("SET SESSION sql_mode = ''")
            with pytest.raises(MySQLUnavailable, match="session settings were reset"):
                await ledger.commit(conn, "b-1", rows, Turn())
            assert not conn.is_open
            await open_with_schema(conn)
            await conn.execute("SET autocommit = 1")
            with pytest.raises(MySQLUnavailable, match="session settings were reset"):
                await ledger.commit(conn, "b-1", rows, Turn())
            await open_with_schema(conn)
            assert (await ledger.commit(conn, "b-1", rows, Turn())).now is True
        finally:
            conn.close()
    assert sql_rows(config) == [("back\\slash' quote",)]


async def test_an_old_ledger_gains_the_refused_column(config: Config) -> None:
    db = config.mysql_database
    old = "(batch_id VARCHAR(64) NOT NULL PRIMARY KEY, votes INT NOT NULL,"
    old += " committed_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP)"
    admin_sql(config, f"CREATE DATABASE `{db}`", f"CREATE TABLE `{db}`.vote_batches {old}")
    async with trio_asyncio.open_loop():
        (await open_conn(config)).close()
    assert [r[0] for r in sql(config, "SHOW COLUMNS FROM vote_batches")][-1] == "refused"


def test_values_are_quoted_for_no_backslash_escapes() -> None:
    rows = [("o'neil", "a'", "2026-11-29 10:00:00"), ("back\\slash", "b", "2026-11-29 10:00:01")]
    assert sqltext.values(rows) == [
        "('o''neil','a''','2026-11-29 10:00:00')",
        "('back\\slash','b','2026-11-29 10:00:01')",
    ]


_VALUE = st.text(alphabet=st.sampled_from("ab'\\é,()"), max_size=6)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_VALUE, _VALUE, _VALUE), max_size=8))
def test_the_joined_values_text_is_the_quoted_values_whatever_they_hold(
    rows: list[tuple[str, str, str]],
) -> None:
    """``values_text`` builds the text without quoting when no value holds a quote: a value
    with one (or several, or only quotes) must still come out quoted."""
    assert sqltext.values_text(rows) == ",".join(sqltext.values(rows))


async def test_the_slow_path_halves_its_way_to_the_refused_rows_marking_each_step(
    config: Config,
) -> None:
    """A batch MySQL refuses goes in parts: a few refused rows among 2,000 cost a few dozen
    statements, not 2,003, and each is a step a liveness probe sees (before, the whole slow
    path was one silent stretch, long enough at this size to look hung)."""
    db = config.mysql_database
    latin1 = VOTES_TABLE.split("votes", 1)[1].replace("utf8mb4", "latin1")
    admin_sql(config, f"CREATE DATABASE `{db}`", f"CREATE TABLE `{db}`.votes {latin1}")
    bad = {3, 500, 1999}
    rows = [
        (f"v{i} \U0001f600" if i in bad else f"v{i}", "a", "2026-11-28 10:00:00")
        for i in range(2000)
    ]
    steps: list[float] = []
    async with trio_asyncio.open_loop():
        conn = await open_conn(config)
        try:
            with pytest.raises(ledger.BatchRejected):
                await ledger.commit(conn, "b-9", rows, Turn())
            done = await ledger.commit_apart(
                conn, "b-9", rows, step=lambda: steps.append(trio.current_time())
            )
        finally:
            conn.close()
    assert done == ledger.Committed(now=True, refused=sorted(bad))
    assert len(steps) <= 2 * len(bad) * 11 + 4  # 11 halvings reach one row of 2,000
    assert len(sql_rows(config)) == 2000 - len(bad)


async def test_a_batch_older_than_a_shorter_retentions_horizon_is_never_committed_again(
    config: Config,
) -> None:
    """Workers with different LEDGER_RETENTION_S: one with 30 s prunes the row of a batch
    committed a minute ago; the batch's owner, with a week's retention, paused meanwhile, wakes
    and commits it again. Its own bounds call the batch fresh; the ledger's horizon, published
    by the pruner before it pruned, says its row may be gone: refused (stale), not stored twice."""
    rows = [("v1", "a", "2026-11-28 10:00:00")]
    async with trio_asyncio.open_loop():
        conn = await open_conn(config)
        try:
            server_now = float((await conn.execute("SELECT UNIX_TIMESTAMP(NOW(3))"))[0][0])
            started_ms = int((server_now - 70) * 1000)
            assert (await ledger.commit(conn, "paused-1", rows, Turn(), None)).now is True
            await conn.execute(
                "UPDATE vote_batches SET committed_at = NOW() - INTERVAL 60 SECOND"
                " WHERE batch_id = 'paused-1'"
            )
            await conn.commit()
            for _ in range(2):  # publish the horizon, then prune past it
                await ledger.prune(conn, 30)
            assert sql(config, "SELECT batch_id FROM vote_batches") == []
            week = fresh_bounds(started_ms, 7 * 86400)
            with pytest.raises(ledger.StaleBatch):
                await ledger.commit(conn, "paused-1", rows, Turn(), week)
            fresh = fresh_bounds(int(server_now * 1000), 7 * 86400)
            assert (await ledger.commit(conn, "fresh-1", rows, Turn(), fresh)).now is True
        finally:
            conn.close()
    assert sql_rows(config) == [("v1",), ("v1",)]  # paused-1 once, fresh-1 once
