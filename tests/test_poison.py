"""Messages of any size: over MAX_MESSAGE_BYTES they are dead-lettered as too_large without ever
being loaded whole, their originals kept in Redis byte for byte; the operator sees and moves
them with `trio-worker dlq`."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from tests.support.commands import cli, run_cli
from tests.support.servers import free_port
from tests.support.stores import (
    inflight_keys,
    letters,
    push_raw,
    push_votes,
    row_count,
    voter_counts,
)
from tests.support.waiting import wait_until
from tests.support.workers import exit_status, worker_process
from trio_worker.config import Config
from trio_worker.queue import PREVIEW_BYTES


async def test_a_message_over_the_limit_is_dead_lettered_with_its_original_kept(
    config: Config, rds: redis.Redis, start_worker: Any
) -> None:
    cfg = replace(config, max_message_bytes=1024)
    at_limit = orjson.dumps({"voter_id": "at-limit", "vote": "a", "pad": ""})
    at_limit = at_limit[:-2] + b"x" * (1024 - len(at_limit)) + at_limit[-2:]
    assert len(at_limit) == 1024
    over = orjson.dumps({"voter_id": "over", "vote": "a", "pad": "é" * 2000})
    garbage = b"\xff" * 3000
    push_raw(rds, cfg, at_limit, over, b'{"voter_id": "small", "vote": "b"}', garbage)
    await start_worker(cfg)
    await wait_until(lambda: row_count(cfg) == 2, what="the two votes within the limit")
    await wait_until(lambda: rds.llen(cfg.dead_letter_queue) == 2, what="two dead letters")
    assert sorted(voter_counts(cfg)) == ["at-limit", "small"]
    for letter, raw in zip(letters(rds, cfg), (over, garbage), strict=True):
        assert letter["reason"] == "too_large"
        assert letter["truncated"] is True
        assert letter["size"] == len(raw)
        assert rds.lrange(letter["original_key"], 0, -1) == [raw]  # byte for byte
        assert letter["original_key"].startswith(f"{cfg.vote_queue}:")
    preview = letters(rds, cfg)[0]
    assert preview["encoding"] == "text"
    assert over.decode().startswith(preview["message"])
    assert len(preview["message"].encode()) <= PREVIEW_BYTES
    assert letters(rds, cfg)[1]["encoding"] == "base64"


@pytest.mark.slow
async def test_operators_see_requeue_and_purge_oversized_letters(
    config: Config, rds: redis.Redis, start_worker: Any
) -> None:
    cfg = replace(config, max_message_bytes=512)
    big = orjson.dumps({"voter_id": "big", "vote": "a", "pad": "p" * 4000})
    push_raw(rds, cfg, big)
    worker = await start_worker(cfg)
    await wait_until(lambda: rds.llen(cfg.dead_letter_queue) == 1, what="the dead letter")
    worker.stop.set()
    await wait_until(lambda: worker.exit_status, what="the worker to stop")
    listed = run_cli(cfg, "dlq", "list", "--reason", "too_large", "--json")
    assert listed.returncode == 0, listed.stderr
    shown = orjson.loads(listed.stdout)
    assert (shown["size"], shown["reason"]) == (len(big), "too_large")
    key = shown["original_key"]
    requeued = await cli(cfg, "dlq", "requeue", "--all")
    assert requeued.returncode == 0, requeued.stderr
    assert "requeued 1 dead letters" in requeued.stdout
    assert rds.lrange(cfg.vote_queue, 0, -1) == [big]  # byte for byte, back where producers push
    assert not rds.exists(key)
    assert rds.llen(cfg.dead_letter_queue) == 0
    # Dead-lettered again (it is still too large), then purged with its original.
    worker = await start_worker(cfg)
    await wait_until(lambda: rds.llen(cfg.dead_letter_queue) == 1, what="the dead letter again")
    key = letters(rds, cfg)[0]["original_key"]
    purged = run_cli(cfg, "dlq", "purge", "--yes")
    assert purged.returncode == 0, purged.stderr
    assert rds.llen(cfg.dead_letter_queue) == 0
    assert not rds.exists(key)


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


@pytest.mark.slow
async def test_worker_memory_stays_bounded_whatever_is_queued(
    config: Config, rds: redis.Redis, tmp_path: Path
) -> None:
    """Regression: a 40-60 MB message OOM-killed a pod with a 512 Mi limit, and every replica
    that took the list over died the same way. Here 100 MB messages arrive on an idle queue
    (the blocking wait's path) and in a busy one (the take's path)."""
    cfg = replace(config, http_port=free_port())
    huge = b'{"voter_id": "huge", "vote": "a", "pad": "' + b"h" * (100 << 20) + b'"}'
    async with worker_process(cfg, tmp_path / "worker.log") as proc:
        ids = push_votes(rds, config, 200)
        await wait_until(lambda: row_count(config) == 200, what="the first votes")
        baseline = peak_rss_mb(proc.pid)
        push_raw(rds, config, huge)  # the queue is idle: the worker is blocked waiting
        ids += push_votes(rds, config, 5000, prefix="busy")
        push_raw(rds, config, huge)  # in a busy queue
        ids += push_votes(rds, config, 200, prefix="after")
        await wait_until(
            lambda: rds.llen(config.vote_queue) == 0 and not inflight_keys(rds, config),
            what="the queue drained",
        )
        peak = peak_rss_mb(proc.pid)
        proc.send_signal(2)
        assert await exit_status(proc, within_s=cfg.shutdown_timeout_s + 5) == 0
    assert peak - baseline < 40, f"peak RSS grew {peak - baseline:.0f} MB over {baseline:.0f} MB"
    assert voter_counts(config) == dict.fromkeys(ids, 1)
    assert [e["reason"] for e in letters(rds, config)] == ["too_large", "too_large"]
