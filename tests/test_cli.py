"""The operator's command line, run as a subprocess against real Redis and MariaDB."""

from __future__ import annotations

import os
import pty
import subprocess
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
import redis
import trio

from tests.support.commands import TRIO_WORKER, cli, on_a_terminal
from tests.support.stores import push_raw, push_votes, row_count, sql, vote
from tests.support.waiting import wait_until
from tests.support.workers import env_of
from trio_worker.config import Config
from trio_worker.messages import envelope, parse
from trio_worker.queue.admin import SETTLE_DEAD

# Each command is a Python process of its own (about a second each): none is a short test.
pytestmark = pytest.mark.slow


def dead_letters(rds: redis.Redis, config: Config, *messages: bytes, reason: str = "x") -> None:
    """Put envelopes of ``messages`` on the dead-letter list, oldest first (as the worker does)."""
    at = datetime.now(UTC)
    rds.rpush(config.dead_letter_queue, *[envelope(m, reason, "test-worker", at) for m in messages])


# --- produce ---------------------------------------------------------------------------------


@pytest.mark.parametrize("consume_from", ["right", "left"])
async def test_produce_pushes_n_valid_votes_at_the_producers_end(
    config: Config, rds: redis.Redis, consume_from: str
) -> None:
    config = replace(config, consume_from=consume_from)  # type: ignore[arg-type]
    result = await cli(config, "produce", "--count", "250", "--choices", "x,y", "--yes")
    assert result.returncode == 0, result.stderr
    assert f"pushed 250 votes (x,y) to {config.vote_queue}" in result.stdout

    assert rds.llen(config.vote_queue) == 250
    # Taken from the worker's end, the votes come in the order they were produced.
    pop = rds.rpop if consume_from == "right" else rds.lpop
    taken = [pop(config.vote_queue) for _ in range(250)]
    rows = [parse(m, "2024-01-01 00:00:00", frozenset({"x", "y"})) for m in taken]  # type: ignore[arg-type]
    assert all(isinstance(r, tuple) for r in rows), rows
    ids = [r[0] for r in rows if isinstance(r, tuple)]
    assert len(set(ids)) == 250
    assert [int(i.rsplit("-", 1)[1]) for i in ids] == list(range(250))
    assert {r[1] for r in rows if isinstance(r, tuple)} <= {"x", "y"}


def test_produce_shows_a_progress_bar_on_a_terminal(config: Config, rds: redis.Redis) -> None:
    controller, terminal = pty.openpty()
    try:
        result = subprocess.run(
            [*TRIO_WORKER, "produce", "--count", "3000", "--yes"],
            env=env_of(config),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=terminal,
            timeout=60,
            check=False,
        )
        bar = os.read(controller, 65536).decode()
    finally:
        os.close(controller)
        os.close(terminal)
    assert result.returncode == 0
    assert "produce [" in bar
    assert "3000/3000 100%" in bar
    assert rds.llen(config.vote_queue) == 3000


async def test_produce_at_a_rate_and_stored_by_the_worker(
    config: Config, rds: redis.Redis, start_worker: Any
) -> None:
    await start_worker(config)
    result = await cli(config, "produce", "--count", "40", "--rate", "400", "--yes")
    assert result.returncode == 0, result.stderr
    await wait_until(lambda: row_count(config) == 40, what="40 produced votes stored")
    assert sql(config, "SELECT COUNT(DISTINCT voter_id) FROM votes") == [(40,)]


async def test_produce_refuses_choices_outside_vote_choices(
    config: Config, rds: redis.Redis
) -> None:
    result = await cli(
        config,
        "produce",
        "--count",
        "5",
        "--choices",
        "a,zz",
        "--yes",
        env={"VOTE_CHOICES": "a,b"},
    )
    assert result.returncode == 2
    assert "--choices: zz not in VOTE_CHOICES" in result.stderr
    assert rds.llen(config.vote_queue) == 0


# --- stats -----------------------------------------------------------------------------------


async def test_stats_before_the_first_run(config: Config, rds: redis.Redis) -> None:
    push_votes(rds, config, 3)
    result = await cli(config, "stats", "--json")
    assert result.returncode == 0, result.stderr
    figures = orjson.loads(result.stdout)
    assert figures["queue_depth"] == 3
    assert figures["database_exists"] is False
    assert figures["stored_total"] == 0
    text = await cli(config, "stats")
    assert "has no votes table yet" in text.stdout


async def test_stats_figures_match_reality(
    config: Config, rds: redis.Redis, start_worker: Any
) -> None:
    push_votes(rds, config, 7)  # 4 'a', 3 'b'
    push_raw(rds, config, b"{not json", b"")
    worker = await start_worker(config)
    await wait_until(lambda: row_count(config) == 7, what="7 rows")
    await wait_until(lambda: rds.llen(config.dead_letter_queue) == 2, what="2 dead letters")
    worker.stop.set()
    await wait_until(lambda: bool(worker.exit_status), what="the worker to stop")
    assert worker.exit_status == [0]

    push_votes(rds, config, 5, prefix="later")
    # A stopped worker's batch, as a crash leaves it: 4 votes held, no heartbeat.
    ghost = f"{config.vote_queue}:inflight:ghost:b1"
    rds.rpush(ghost, *[vote(f"g{i}") for i in range(4)])
    rds.sadd(f"{config.vote_queue}:inflight", ghost)

    result = await cli(config, "stats", "--json")
    assert result.returncode == 0, result.stderr
    figures = orjson.loads(result.stdout)
    assert figures == {
        "queue": config.vote_queue,
        "queue_depth": 5,
        "in_flight": 4,
        "workers_with_in_flight": ["ghost"],
        "workers_with_in_flight_dead": ["ghost"],
        "dead_letter_queue": config.dead_letter_queue,
        "dead_letters": 2,
        "database": config.mysql_database,
        "database_exists": True,
        "stored_by_vote": {"a": 4, "b": 3},
        "stored_total": 7,
    }

    text = (await cli(config, "stats")).stdout
    assert "queue depth     5\n" in text
    assert "in flight       4 (held by ghost)\n" in text
    assert "awaiting takeover: ghost" in text
    assert f"dead letters    2 in {config.dead_letter_queue}\n" in text
    assert "stored total    7 " in text
    assert "  a             4\n" in text
    assert "  b             3\n" in text


# --- dlq ---------------------------------------------------------------------------------------


async def test_dlq_list_shows_the_oldest_first(
    config: Config, rds: redis.Redis, start_worker: Any
) -> None:
    push_raw(rds, config, b"{first", b"[2]", b'{"voter_id": "v"}')
    await start_worker(config)
    await wait_until(lambda: rds.llen(config.dead_letter_queue) == 3, what="3 dead letters")

    result = await cli(config, "dlq", "list", "--limit", "2", "--json")
    assert result.returncode == 0, result.stderr
    items = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert [(i["message"], i["reason"]) for i in items] == [
        ("{first", "not_json"),
        ("[2]", "not_object"),
    ]
    assert all(i["worker_id"] == config.worker_id for i in items)
    assert rds.llen(config.dead_letter_queue) == 3  # listing removes nothing


async def test_dlq_requeue_moves_each_dead_letter_once_oldest_first(
    config: Config, rds: redis.Redis
) -> None:
    originals = [vote(f"d{i}") for i in range(5)]
    dead_letters(rds, config, *originals[:4], b"\xff\xfe not utf-8")

    result = await cli(config, "dlq", "requeue", "--limit", "2")
    assert result.returncode == 0, result.stderr
    assert "requeued 2 dead letters" in result.stdout
    assert rds.lrange(config.vote_queue, 0, -1) == [originals[1], originals[0]]
    assert rds.llen(config.dead_letter_queue) == 3

    result = await cli(config, "dlq", "requeue", "--all")
    assert "requeued 3 dead letters" in result.stdout
    # LPUSHed in age order: the worker (taking from the right) gets the oldest first.
    assert rds.lrange(config.vote_queue, 0, -1)[::-1] == [
        *originals[:4],
        b"\xff\xfe not utf-8",  # base64 in the envelope, the original bytes back on the queue
    ]
    assert rds.exists(config.dead_letter_queue) == 0

    again = await cli(config, "dlq", "requeue", "--all")
    assert again.returncode == 0
    assert "requeued 0 dead letters" in again.stdout
    assert rds.llen(config.vote_queue) == 5


async def test_concurrent_requeues_move_each_dead_letter_exactly_once(
    config: Config, rds: redis.Redis
) -> None:
    originals = [vote(f"c{i}") for i in range(3000)]
    dead_letters(rds, config, *originals)
    results: list[subprocess.CompletedProcess[str]] = []

    async def requeue() -> None:
        results.append(await cli(config, "dlq", "requeue", "--all"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(requeue)
        nursery.start_soon(requeue)

    assert [r.returncode for r in results] == [0, 0]
    moved = [int(r.stdout.split()[1]) for r in results]
    assert sum(moved) == 3000
    queued = rds.lrange(config.vote_queue, 0, -1)
    assert sorted(queued) == sorted(originals)  # each once: none lost, none doubled
    assert rds.exists(config.dead_letter_queue) == 0


def test_requeue_script_moves_nothing_when_the_head_changed(
    config: Config, rds: redis.Redis
) -> None:
    dead_letters(rds, config, vote("h1"), vote("h2"))
    seen = rds.lrange(config.dead_letter_queue, 0, 0)
    rds.lpop(config.dead_letter_queue)  # another operator got there first
    script = rds.register_script(SETTLE_DEAD.source)
    keys = [config.dead_letter_queue, config.vote_queue]
    result = script(keys=keys, args=["LPUSH", 0, 1, *seen, "push", vote("h1")])
    assert result == -1
    assert rds.llen(config.vote_queue) == 0
    assert rds.llen(config.dead_letter_queue) == 1


async def test_requeue_all_ends_while_a_worker_dead_letters_them_again(
    config: Config, rds: redis.Redis, start_worker: Any
) -> None:
    dead_letters(rds, config, vote("r1", "a"), b"{still broken", vote("r2", "b"), b"[]")
    await start_worker(config)
    result = await cli(config, "dlq", "requeue", "--all")
    assert result.returncode == 0, result.stderr
    assert "requeued 4 dead letters" in result.stdout
    await wait_until(lambda: row_count(config) == 2, what="the 2 valid requeued votes stored")
    await wait_until(lambda: rds.llen(config.dead_letter_queue) == 2, what="2 dead again")
    assert sorted(v for (v,) in sql(config, "SELECT voter_id FROM votes")) == ["r1", "r2"]


async def test_dlq_purge_without_terminal_or_yes_deletes_nothing(
    config: Config, rds: redis.Redis
) -> None:
    dead_letters(rds, config, b"a", b"b")
    result = await cli(config, "dlq", "purge")
    assert result.returncode == 2
    assert "pass --yes" in result.stderr
    assert rds.llen(config.dead_letter_queue) == 2

    result = await cli(config, "dlq", "purge", "--yes")
    assert result.returncode == 0, result.stderr
    assert "purged 2 dead letters" in result.stdout
    assert rds.exists(config.dead_letter_queue) == 0


@pytest.mark.parametrize(("answer", "status", "left"), [(b"n\n", 1, 3), (b"y\n", 0, 0)])
def test_dlq_purge_asks_on_a_terminal(
    config: Config, rds: redis.Redis, answer: bytes, status: int, left: int
) -> None:
    dead_letters(rds, config, b"a", b"b", b"c")
    returncode, stdout = on_a_terminal(config, ["dlq", "purge"], answer)
    assert f"delete 3 dead letters in {config.dead_letter_queue}? [y/N]" in stdout
    assert returncode == status
    assert rds.llen(config.dead_letter_queue) == left


# --- check, arguments and configuration --------------------------------------------------------


async def test_check_reaches_both_stores_and_says_whether_the_database_exists(
    config: Config, start_worker: Any
) -> None:
    result = await cli(config, "check")
    assert result.returncode == 0, result.stderr
    assert f"ok: Redis at {config.redis_address}: reachable" in result.stdout
    assert f"ok: MySQL at {config.mysql_address}: reachable" in result.stdout
    assert f"database '{config.mysql_database}' does not exist yet" in result.stdout

    worker = await start_worker(config)  # creates the database
    worker.stop.set()
    await wait_until(lambda: bool(worker.exit_status), what="the worker to stop")
    result = await cli(config, "check")
    assert result.returncode == 0, result.stderr
    assert f"database '{config.mysql_database}' exists" in result.stdout


@pytest.mark.parametrize(("variable", "store"), [("MYSQL_PORT", "MySQL"), ("REDIS_PORT", "Redis")])
async def test_check_names_the_store_that_is_down(
    config: Config, variable: str, store: str
) -> None:
    result = await cli(config, "check", env={variable: "3399"})
    assert result.returncode == 1
    assert f"error: {store} at 127.0.0.1:3399: connection refused" in result.stderr


@pytest.mark.parametrize(
    ("args", "variable", "store"),
    [
        (["check"], "REDIS_PORT", "Redis"),
        (["check"], "MYSQL_PORT", "MySQL"),
        (["stats"], "REDIS_PORT", "Redis"),
        (["stats"], "MYSQL_PORT", "MySQL"),
        (["stats", "--json"], "MYSQL_PORT", "MySQL"),
        (["produce", "--count", "5", "--yes"], "REDIS_PORT", "Redis"),
        (["dlq", "list"], "REDIS_PORT", "Redis"),
        (["dlq", "requeue", "--all"], "REDIS_PORT", "Redis"),
        (["dlq", "requeue", "--limit", "2"], "REDIS_PORT", "Redis"),
        (["dlq", "purge", "--yes"], "REDIS_PORT", "Redis"),
        (["dlq", "purge"], "REDIS_PORT", "Redis"),
    ],
)
async def test_every_command_with_a_store_down_exits_1_naming_it_in_one_line(
    config: Config, args: list[str], variable: str, store: str
) -> None:
    result = await cli(config, *args, env={variable: "1"})
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [
        f"{'error:' if args == ['check'] else 'trio-worker:'} {store} at 127.0.0.1:1:"
        " connection refused"
    ], result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["produce"], "the following arguments are required: --count"),
        (["produce", "--count", "many"], "argument --count: expected a whole number"),
        (["produce", "--count", "0"], "argument --count: expected a number of at least 1"),
        (["produce", "--count", "1", "--rate", "-5"], "argument --rate: expected a positive"),
        (["produce", "--count", "1", "--choices", ",a"], "argument --choices"),
        (["dlq", "requeue"], "one of the arguments --all --limit is required"),
        (["dlq", "requeue", "--all", "--limit", "3"], "not allowed with argument"),
        (["dlq", "list", "--limit", "-1"], "argument --limit"),
        (["dlq"], "the following arguments are required: ACTION"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        ([], "the following arguments are required: COMMAND"),
    ],
)
async def test_bad_arguments_exit_2_with_a_message(
    config: Config, args: list[str], message: str
) -> None:
    result = await cli(config, *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "usage: trio-worker" in result.stderr


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"BATCH_SIZE": "-1"}, "BATCH_SIZE"),
        ({"REDIS_PORT": "sixty"}, "REDIS_PORT"),
        ({"MYSQL_PASSWORD_FILE": "/nonexistent/secret"}, "MYSQL_PASSWORD_FILE"),
        ({"QUEUE_CONSUME_FROM": "middle"}, "QUEUE_CONSUME_FROM"),
    ],
)
async def test_bad_configuration_exits_2_naming_the_variable(
    config: Config, env: dict[str, str], variable: str
) -> None:
    for command in (["stats"], ["check"]):
        result = await cli(config, *command, env=env)
        assert result.returncode == 2
        assert f"configuration error: {variable}: expected" in result.stderr


async def test_help_documents_exit_statuses(config: Config) -> None:
    for args in (["--help"], ["dlq", "--help"], ["produce", "--help"]):
        result = await cli(config, *args)
        assert result.returncode == 0
        assert "exit status:" in result.stdout
        assert "2  bad configuration" in result.stdout
