"""The real service, in-process, against real Redis and MariaDB."""

from __future__ import annotations

import base64
import itertools
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest
import redis
import redis.asyncio as aredis
import redis.exceptions as rex
import trio

from tests.support.http import get
from tests.support.stores import (
    admin_sql,
    inflight_keys,
    push_raw,
    push_votes,
    row_count,
    sql,
    voter_counts,
)
from tests.support.waiting import wait_until
from trio_worker.config import Config
from trio_worker.mysql.schema import LEDGER_TABLE, VOTES_TABLE

MALFORMED: dict[bytes, str] = {
    b"": "empty",
    b"\xff\xfe not utf-8": "not_utf8",
    b"{not json": "not_json",
    b"[1, 2]": "not_object",
    b'"a string"': "not_object",
    b'{"vote": "a"}': "bad_voter_id",
    b'{"voter_id": 7, "vote": "a"}': "bad_voter_id",
    b'{"voter_id": "", "vote": "a"}': "bad_voter_id",
    ('{"voter_id": "' + "x" * 256 + '", "vote": "a"}').encode(): "bad_voter_id",
    b'{"voter_id": "m1"}': "bad_vote",
    b'{"voter_id": "m2", "vote": "elevenchars"}': "bad_vote",
    b'{"voter_id": "m3", "vote": "a", "timestamp": "yesterday"}': "bad_timestamp",
}


def samples(text: str) -> dict[str, float]:
    """Prometheus text as ``{name{labels}: value}``."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


async def test_stores_valid_votes_once_and_dead_letters_the_rest(
    config: Config, rds: redis.Redis, start_worker: Any
) -> None:
    ids = push_votes(rds, config, 5000)
    push_raw(rds, config, *MALFORMED)
    ids += push_votes(rds, config, 5000, prefix="w")
    worker = await start_worker(config)
    await wait_until(lambda: row_count(config) == 10_000, what="10,000 rows")
    await wait_until(
        lambda: rds.llen(config.dead_letter_queue) == len(MALFORMED), what="dead letters"
    )

    assert voter_counts(config) == dict.fromkeys(ids, 1)
    envelopes = [orjson.loads(e) for e in rds.lrange(config.dead_letter_queue, 0, -1)]
    got = {}
    for env in envelopes:
        raw = (
            base64.b64decode(env["message"])
            if env["encoding"] == "base64"
            else env["message"].encode()
        )
        got[raw] = env["reason"]
        assert env["worker_id"] == config.worker_id
        assert datetime.fromisoformat(env["time"]).tzinfo is not None
    assert got == MALFORMED

    # The counters move when a flusher hears its COMMIT's reply, a moment after the rows show.
    counted = ('votes_processed_total{vote="a"} 5000.0', 'votes_processed_total{vote="b"} 5000.0')
    for _ in range(200):  # polling /metrics: the counters live in the worker, not in an Event
        metrics = (await get(worker.url + "/metrics")).text
        if all(line in metrics for line in counted):
            break
        await trio.sleep(0.05)
    for line in counted:
        assert line in metrics
    values = samples(metrics)
    for reason, n in Counter(MALFORMED.values()).items():
        assert values[f'dead_letters_total{{reason="{reason}"}}'] == n, reason
    assert sum(v for k, v in values.items() if k.startswith("dead_letters_total")) == len(MALFORMED)
    # A clean run: no store errors, nothing held, every message in exactly one batch.
    assert values["redis_errors_total"] == 0
    assert values["database_errors_total"] == 0
    assert values["votes_in_flight"] == 0
    assert values["vote_batch_size_sum"] == 10_000 + len(MALFORMED)
    batches = values["vote_batch_size_count"]
    assert values["vote_process_duration_seconds_count"] == batches
    assert values["vote_process_duration_seconds_sum"] > 0
    # One commit per batch that has rows, each with its one ledger row.
    ledger = sql(config, "SELECT COUNT(*), SUM(votes) FROM vote_batches")[0]
    assert (values["mysql_commit_duration_seconds_count"], int(ledger[1])) == (ledger[0], 10_000)
    assert 10_000 / config.batch_size <= ledger[0] <= batches
    # Depth is sampled every second: it reaches 0 once a sample follows the drain.
    for _ in range(100):  # polling /metrics: the gauge lives in the worker
        if samples((await get(worker.url + "/metrics")).text)["vote_queue_depth"] == 0:
            break
        await trio.sleep(0.05)
    assert samples((await get(worker.url + "/metrics")).text)["vote_queue_depth"] == 0

    worker.stop.set()
    await wait_until(lambda: worker.exit_status, what="the worker to exit")
    assert worker.exit_status == [0]
    assert inflight_keys(rds, config) == []
    assert rds.exists(f"{config.vote_queue}:worker:{config.worker_id}") == 0


async def test_health_ready_and_http_errors(config: Config, start_worker: Any) -> None:
    worker = await start_worker(config)
    health = await get(worker.url + "/health")
    assert health.status_code == 200
    body = health.json()
    assert body["status"] == "healthy"
    assert body["service"] == "worker"
    assert body["redis"] == "connected"
    assert body["database"] == "connected"
    datetime.strptime(body["timestamp"], "%Y-%m-%dT%H:%M:%SZ")
    for _ in range(100):  # ready once both stores have answered the pipeline
        ready = await get(worker.url + "/ready")
        if ready.status_code == 200:
            break
        await trio.sleep(0.05)
    assert ready.status_code == 200
    assert ready.json() == {
        "ready": True,
        "phase": "running",
        "worker_id_conflict": False,
        "redis": True,
        "database": True,
    }
    assert (await get(worker.url + "/nope")).status_code == 404
    async with httpx.AsyncClient() as client:
        assert (await client.post(worker.url + "/health")).status_code == 405
    assert 'health_checks_total{status="healthy"} 1.0' in (await get(worker.url + "/metrics")).text


async def test_health_reports_a_store_that_is_down_and_the_worker_keeps_running(
    config: Config, start_worker: Any
) -> None:
    # Nothing listens on port 1: Redis is "down" from the start; MySQL is up.
    worker = await start_worker(config, ready=False, redis_port=1)
    health = await get(worker.url + "/health")
    assert health.status_code == 503
    assert health.json()["redis"] == "disconnected"
    assert health.json()["database"] == "connected"
    assert health.json()["status"] == "unhealthy"
    assert (await get(worker.url + "/ready")).status_code == 503
    await trio.sleep(1.0)
    assert worker.exit_status == []  # still running, retrying
    values = samples((await get(worker.url + "/metrics")).text)
    assert values["redis_errors_total"] >= 1  # each failed attempt counts
    assert values["database_errors_total"] == 0
    assert values['health_checks_total{status="unhealthy"}'] == 1
    assert values.get('health_checks_total{status="healthy"}', 0) == 0
    assert values["worker_ready"] == 0


async def test_timestamps_are_stored_in_utc(
    config: Config, rds: redis.Redis, start_worker: Any
) -> None:
    push_raw(
        rds,
        config,
        b'{"voter_id": "iso-naive", "vote": "a", "timestamp": "2024-05-06T07:08:09.123456"}',
        b'{"voter_id": "iso-offset", "vote": "a", "timestamp": "2024-05-06T09:08:09+02:00"}',
        b'{"voter_id": "iso-z", "vote": "a", "timestamp": "2024-05-06T07:08:09Z"}',
        b'{"voter_id": "epoch", "vote": "a", "timestamp": 1714979289}',
        b'{"voter_id": "absent", "vote": "a"}',
        '{"voter_id": "o\'brien \\u0000 \\\\ \U0001f600", "vote": "\u00e9"}'.encode(),
    )
    before = datetime.now(UTC).replace(microsecond=0, tzinfo=None)
    await start_worker(config)
    await wait_until(lambda: row_count(config) == 6, what="6 rows")
    rows = dict(sql(config, "SELECT voter_id, timestamp FROM votes"))
    for vid in ("iso-naive", "iso-offset", "iso-z", "epoch"):
        assert rows[vid] == datetime(2024, 5, 6, 7, 8, 9), vid
    assert before <= rows["absent"] <= datetime.now(UTC).replace(tzinfo=None)
    assert ("o'brien \x00 \\ \U0001f600", "\u00e9") in sql(
        config, "SELECT voter_id, vote FROM votes"
    )


async def test_rpush_producers_with_consume_from_left(
    config: Config, rds: redis.Redis, start_worker: Any
) -> None:
    left = replace(config, consume_from="left", batch_size=100)
    ids = push_votes(rds, left, 3000)  # RPUSH, as the classic Docker voting app does
    await start_worker(left)
    await wait_until(lambda: row_count(left) == 3000, what="3000 rows")
    stored = [r[0] for r in sql(left, "SELECT voter_id FROM votes ORDER BY id")]
    assert sorted(stored) == sorted(ids)
    # Taken in arrival order: each batch's rows are in order and get consecutive ids, so the
    # stored order is a few ascending runs, one per batch at most (batches on other connections
    # may commit first). Taken from the wrong end, every step would go backwards.
    arrived = {voter: i for i, voter in enumerate(ids)}
    order = [arrived[voter] for voter in stored]
    backward_steps = sum(1 for a, b in itertools.pairwise(order) if b < a)
    assert backward_steps < len(ids) // left.batch_size


async def test_vote_choices_allow_list(config: Config, rds: redis.Redis, start_worker: Any) -> None:
    push_raw(
        rds, config, b'{"voter_id": "1", "vote": "cats"}', b'{"voter_id": "2", "vote": "dogs"}'
    )
    await start_worker(config, vote_choices=frozenset({"cats"}))
    await wait_until(lambda: rds.llen(config.dead_letter_queue) == 1, what="a dead letter")
    await wait_until(lambda: row_count(config) == 1, what="one row")
    assert (
        orjson.loads(rds.lindex(config.dead_letter_queue, 0) or b"")["reason"] == "vote_not_allowed"
    )


async def test_a_one_megabyte_message_is_handled(
    config: Config, rds: redis.Redis, start_worker: Any
) -> None:
    padding = "p" * (1 << 20)
    big_valid = orjson.dumps({"voter_id": "big", "vote": "a", "padding": padding})
    big_invalid = orjson.dumps({"voter_id": "x" * (1 << 20), "vote": "a"})
    push_raw(rds, config, big_valid, big_invalid, b'{"voter_id": "after", "vote": "b"}')
    await start_worker(config, max_message_bytes=2 << 20)  # over the 64 KiB default
    await wait_until(lambda: row_count(config) == 2, what="both valid rows")
    await wait_until(lambda: rds.llen(config.dead_letter_queue) == 1, what="the dead letter")
    assert sorted(r[0] for r in sql(config, "SELECT voter_id FROM votes")) == ["after", "big"]
    envelope = orjson.loads(rds.lindex(config.dead_letter_queue, 0) or b"")
    assert envelope["reason"] == "bad_voter_id"
    assert envelope["message"].encode() == big_invalid


async def test_an_account_without_create_rights_works_on_a_prepared_schema(
    config: Config, rds: redis.Redis, start_worker: Any
) -> None:
    user = f"lim_{config.vote_queue[1:9]}"
    db = config.mysql_database
    admin_sql(
        config,
        f"CREATE DATABASE `{db}`",
        f"CREATE TABLE `{db}`.votes {VOTES_TABLE.split('votes', 1)[1]}",
        f"CREATE TABLE `{db}`.vote_batches {LEDGER_TABLE.split('vote_batches', 1)[1]}",
        f"CREATE USER '{user}'@'%' IDENTIFIED BY 'pw'",
        f"GRANT SELECT, INSERT, DELETE ON `{db}`.* TO '{user}'@'%'",
    )
    try:
        ids = push_votes(rds, config, 500)
        worker = await start_worker(config, mysql_user=user, mysql_password="pw")
        await wait_until(lambda: row_count(config) == 500, what="500 rows")
        assert voter_counts(config) == dict.fromkeys(ids, 1)
        worker.stop.set()
        await wait_until(lambda: worker.exit_status, what="exit")
        assert worker.exit_status == [0]
    finally:
        admin_sql(config, f"DROP USER IF EXISTS '{user}'@'%'")


async def test_a_dropped_table_is_recreated_and_the_worker_goes_on(
    config: Config, rds: redis.Redis, start_worker: Any
) -> None:
    push_votes(rds, config, 100)
    worker = await start_worker(config)
    await wait_until(lambda: row_count(config) == 100, what="100 rows")
    sql(config, "DROP TABLE votes")
    ids = push_votes(rds, config, 300, prefix="after")
    await wait_until(lambda: row_count(config) == 300, what="300 rows in the new table")
    assert voter_counts(config) == dict.fromkeys(ids, 1)
    assert worker.exit_status == []


async def test_a_row_mysql_refuses_is_dead_lettered_and_the_rest_stored(
    config: Config, rds: redis.Redis, start_worker: Any
) -> None:
    """An older latin1 votes table can't hold an emoji: that vote alone is dead-lettered."""
    ddl = VOTES_TABLE.split("votes", 1)[1].replace("utf8mb4", "latin1")
    db = config.mysql_database
    admin_sql(config, f"CREATE DATABASE `{db}`", f"CREATE TABLE `{db}`.votes {ddl}")
    emoji = '{"voter_id": "smile \U0001f600", "vote": "a"}'.encode()
    push_raw(
        rds,
        config,
        b'{"voter_id": "plain", "vote": "a"}',
        emoji,
        b'{"voter_id": "p2", "vote": "b"}',
    )
    await start_worker(config)
    await wait_until(lambda: rds.llen(config.dead_letter_queue) == 1, what="the dead letter")
    await wait_until(lambda: row_count(config) == 2, what="two rows")
    envelope = orjson.loads(rds.lindex(config.dead_letter_queue, 0) or b"")
    assert envelope["reason"] == "rejected_by_database"
    assert envelope["message"].encode() == emoji
    assert sorted(r[0] for r in sql(config, "SELECT voter_id FROM votes")) == ["p2", "plain"]


async def test_a_redis_close_that_fails_at_the_end_is_logged_not_a_crash(
    config: Config,
    rds: redis.Redis,
    start_worker: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Closing the Redis connections is the last thing a stopping worker does, after every
    vote is stored: redis-py raises if one of them does not close in time. That is worth a
    warning, not a traceback and a failed exit after a clean drain."""
    closing = aredis.Redis.aclose

    async def close_then_fail(self: aredis.Redis, *args: Any, **kwargs: Any) -> None:
        await closing(self, *args, **kwargs)
        raise rex.TimeoutError("Timed out closing connection after 5")

    monkeypatch.setattr(aredis.Redis, "aclose", close_then_fail)
    worker = await start_worker(config)
    ids = push_votes(rds, config, 300)
    await wait_until(lambda: row_count(config) == len(ids), what="every vote stored")
    worker.stop.set()
    await wait_until(lambda: bool(worker.exit_status), what="the drain")
    assert worker.exit_status == [0]
    assert any(
        r.getMessage() == "closing the Redis connections failed"
        and "timed out" in getattr(r, "error", "")
        for r in caplog.records
    ), [r.getMessage() for r in caplog.records]
