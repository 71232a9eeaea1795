"""Operator commands that can't lose votes by accident: ``dlq purge`` keeps ``stale_batch``
letters unless asked for them, shows what it will delete and asks (or needs ``--yes``);
``produce`` writes into the real queue only when confirmed; ``requeue --dry-run``, ``list``
for people and for scripts, ``check --json``; and the commands that need only Redis ignore
MySQL's settings. Run as subprocesses against real Redis and MariaDB."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest
import redis

from tests.support.commands import cli, on_a_terminal
from tests.support.stores import letters, vote
from trio_worker.config import Config
from trio_worker.messages import envelope, too_large_envelope
from trio_worker.version import version


def fill(rds: redis.Redis, config: Config) -> str:
    """Dead letters of three kinds, oldest first: 2 not_json, 2 stale_batch (valid votes that
    may or may not be stored), 1 too_large whose original waits in its own list. Returns that
    list's key."""
    at = datetime.now(UTC)
    big_key = f"{config.vote_queue}:large:b1:0"
    rds.rpush(big_key, b'{"voter_id": "big", "vote": "a", "pad": "' + b"p" * 2000 + b'"}')
    rds.rpush(
        config.dead_letter_queue,
        envelope(b"{nope", "not_json", "w1", at),
        envelope(vote("s1"), "stale_batch", "w1", at, may_be_stored=True),
        envelope(b"[1]", "not_json", "w1", at),
        envelope(vote("s2"), "stale_batch", "w1", at, may_be_stored=True),
        too_large_envelope(b'{"voter_id": "big"', 2040, big_key, "w1", at),
    )
    return big_key


# --- dlq purge -----------------------------------------------------------------------------------


async def test_purge_yes_keeps_stale_batch_letters(config: Config, rds: redis.Redis) -> None:
    big_key = fill(rds, config)
    result = await cli(config, "dlq", "purge", "--yes")
    assert result.returncode == 0, result.stderr
    said = result.stdout
    assert f"dead letters in {config.dead_letter_queue}, by reason:" in said
    lines = {line.split()[0]: line.split()[1:] for line in said.splitlines() if line[:2] == "  "}
    assert lines["not_json"][:2] == ["2", "delete"]
    assert lines["too_large"][:2] == ["1", "delete"]
    assert lines["stale_batch"][:2] == ["2", "keep:"]
    assert "only copy of a valid vote" in said
    assert "purged 3 dead letters" in said
    assert "kept 2 (2 stale_batch)" in said
    assert [(d["reason"], d["message"]) for d in letters(rds, config)] == [
        ("stale_batch", vote("s1").decode()),
        ("stale_batch", vote("s2").decode()),
    ]
    assert not rds.exists(big_key)  # a too_large letter goes with its original


async def test_purge_reason_deletes_only_that_reason(config: Config, rds: redis.Redis) -> None:
    big_key = fill(rds, config)
    result = await cli(config, "dlq", "purge", "--reason", "not_json", "--yes")
    assert result.returncode == 0, result.stderr
    assert "purged 2 dead letters" in result.stdout
    assert [d["reason"] for d in letters(rds, config)] == [
        "stale_batch",
        "stale_batch",
        "too_large",
    ]
    assert rds.exists(big_key)
    result = await cli(config, "dlq", "purge", "--reason", "stale_batch", "--yes")
    assert result.returncode == 0, result.stderr
    assert "purged 2 dead letters" in result.stdout
    assert [d["reason"] for d in letters(rds, config)] == ["too_large"]
    assert rds.exists(big_key)


async def test_purge_without_a_terminal_or_yes_shows_the_counts_and_removes_nothing(
    config: Config, rds: redis.Redis
) -> None:
    big_key = fill(rds, config)
    before = rds.lrange(config.dead_letter_queue, 0, -1)
    result = await cli(config, "dlq", "purge")
    assert result.returncode == 2
    assert "no terminal to confirm (delete 3 dead letters" in result.stderr
    assert "pass --yes" in result.stderr
    assert "stale_batch" in result.stdout
    assert rds.lrange(config.dead_letter_queue, 0, -1) == before
    assert rds.exists(big_key)


def test_purge_on_a_terminal_shows_the_counts_before_it_asks(
    config: Config, rds: redis.Redis
) -> None:
    fill(rds, config)
    status, said = on_a_terminal(config, ["dlq", "purge"], b"y\n")
    assert status == 0
    counts = said.index("by reason:")
    question = said.index(f"delete 3 dead letters in {config.dead_letter_queue}? [y/N]")
    assert counts < question
    assert [d["reason"] for d in letters(rds, config)] == ["stale_batch", "stale_batch"]


async def test_purge_with_only_stale_letters_has_nothing_to_do(
    config: Config, rds: redis.Redis
) -> None:
    at = datetime.now(UTC)
    rds.rpush(config.dead_letter_queue, envelope(vote("s"), "stale_batch", "w", at))
    result = await cli(config, "dlq", "purge")  # no terminal, no --yes: nothing to ask about
    assert result.returncode == 0, result.stderr
    assert "nothing to purge" in result.stdout
    assert rds.llen(config.dead_letter_queue) == 1


# --- dlq requeue --dry-run, dlq list ------------------------------------------------------------


async def test_requeue_dry_run_moves_nothing_and_says_what_would(
    config: Config, rds: redis.Redis
) -> None:
    fill(rds, config)
    before = rds.lrange(config.dead_letter_queue, 0, -1)
    result = await cli(config, "dlq", "requeue", "--all", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(
        f"would requeue 3 dead letters from {config.dead_letter_queue} to {config.vote_queue}"
        " (2 not_json, 1 too_large)"
    )
    assert "would leave 2 stale_batch letters" in result.stderr
    assert rds.lrange(config.dead_letter_queue, 0, -1) == before
    assert rds.llen(config.vote_queue) == 0
    limited = await cli(config, "dlq", "requeue", "--limit", "1", "--dry-run")
    assert "would requeue 1 dead letters" in limited.stdout
    # The real thing moves what the dry run said.
    done = await cli(config, "dlq", "requeue", "--all")
    assert "requeued 3 dead letters" in done.stdout
    assert rds.llen(config.vote_queue) == 3


async def test_list_shows_people_a_line_a_letter_and_scripts_the_envelopes(
    config: Config, rds: redis.Redis
) -> None:
    fill(rds, config)
    shown = await cli(config, "dlq", "list", "--limit", "2")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].split() == ["time", "reason", "worker", "message"]
    assert "not_json" in lines[1]
    assert '"{nope"' in lines[1]
    assert "stale_batch" in lines[2]
    assert "(may be stored already)" in lines[2]
    assert lines[3].startswith(f"2 shown, oldest first, of 5 in {config.dead_letter_queue}")

    every = await cli(config, "dlq", "list", "--all", "--json")
    assert every.returncode == 0, every.stderr
    assert [orjson.loads(line) for line in every.stdout.splitlines()] == letters(rds, config)
    big = await cli(config, "dlq", "list", "--reason", "too_large")
    assert "(first bytes of 2040)" in big.stdout

    both = await cli(config, "dlq", "list", "--all", "--limit", "3")
    assert both.returncode == 2
    assert "not allowed with argument" in both.stderr


# --- produce -------------------------------------------------------------------------------------


async def test_produce_without_a_terminal_needs_yes_and_pushes_nothing(
    config: Config, rds: redis.Redis
) -> None:
    result = await cli(config, "produce", "--count", "10")  # stdin is /dev/null
    assert result.returncode == 2
    assert "produce: no terminal to confirm (push 10 test votes into" in result.stderr
    assert "pass --yes" in result.stderr
    assert rds.llen(config.vote_queue) == 0


@pytest.mark.parametrize(("answer", "status", "pushed"), [(b"n\n", 1, 0), (b"y\n", 0, 7)])
def test_produce_asks_on_a_terminal(
    config: Config, rds: redis.Redis, answer: bytes, status: int, pushed: int
) -> None:
    code, said = on_a_terminal(config, ["produce", "--count", "7"], answer)
    assert f"push 7 test votes into {config.vote_queue}" in said
    assert "stored like real votes" in said
    assert code == status
    assert rds.llen(config.vote_queue) == pushed


# --- check --json --------------------------------------------------------------------------------


async def test_check_json(config: Config) -> None:
    result = await cli(config, "check", "--json")
    assert result.returncode == 0, result.stderr
    doc = orjson.loads(result.stdout)
    assert (doc["ok"], doc["version"]) == (True, version())
    assert doc["configuration"] == {
        "ok": True,
        "queue": config.vote_queue,
        "dead_letter_queue": config.dead_letter_queue,
        "worker_id": config.worker_id,
    }
    assert doc["redis"]["ok"] is True
    assert doc["redis"]["address"] == config.redis_address
    assert doc["redis"]["message"].startswith(f"Redis at {config.redis_address}: reachable")
    assert doc["mysql"]["ok"] is True
    assert doc["mysql"]["database"] == config.mysql_database
    assert doc["mysql"]["database_exists"] is False

    down = await cli(config, "check", "--json", env={"MYSQL_PORT": "1"})
    assert down.returncode == 1
    doc = orjson.loads(down.stdout)
    assert (doc["ok"], doc["redis"]["ok"], doc["mysql"]["ok"]) == (False, True, False)
    assert doc["mysql"]["message"] == "MySQL at 127.0.0.1:1: connection refused"


# --- Redis-only commands and MySQL settings ---------------------------------------------------


async def test_redis_only_commands_ignore_mysql_settings(config: Config, rds: redis.Redis) -> None:
    """A CA file that exists only where the workers run, a secret given twice: MySQL's
    problems, not those of a command that never connects to MySQL."""
    bad = {
        "MYSQL_SSL_CA": "/nonexistent/ca.pem",
        "MYSQL_PASSWORD": "one",
        "MYSQL_PASSWORD_FILE": "/nonexistent/password",
    }
    produced = await cli(config, "produce", "--count", "3", "--yes", env=bad)
    assert produced.returncode == 0, produced.stderr
    assert rds.llen(config.vote_queue) == 3
    fill(rds, config)
    for args in (
        ["dlq", "list"],
        ["dlq", "requeue", "--limit", "1"],
        ["dlq", "purge", "--reason", "not_json", "--yes"],
    ):
        result = await cli(config, *args, env=bad)
        assert result.returncode == 0, (args, result.stderr)
    for args in (["check"], ["stats"]):
        result = await cli(config, *args, env=bad)
        assert result.returncode == 2, (args, result.stderr)
        assert "configuration error: MYSQL_" in result.stderr
