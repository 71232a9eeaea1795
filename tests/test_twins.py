"""Two live processes with one WORKER_ID: the second takes nothing while the first lives."""

from __future__ import annotations

import signal
from dataclasses import replace
from pathlib import Path

import pytest
import redis

from tests.support.http import get, metric, wait_answering
from tests.support.servers import free_port
from tests.support.stores import inflight_keys, push_votes, row_count, voter_counts
from tests.support.waiting import wait_until
from tests.support.workers import exit_status, worker_process
from trio_worker.config import Config

pytestmark = pytest.mark.slow


async def test_a_twin_takes_no_votes_while_the_other_lives_then_takes_over(
    config: Config, rds: redis.Redis, tmp_path: Path
) -> None:
    """Regression: before the heartbeat carried a token, the twin recovered every list under
    the shared id that it did not hold itself: a prefix of the other's filling batch, whose
    list it then deleted with the rest of the votes in it."""
    first = replace(config, http_port=free_port(), heartbeat_ttl_s=2, batch_size=50)
    twin = replace(first, http_port=free_port())
    first_url, twin_url = (f"http://127.0.0.1:{c.http_port}" for c in (first, twin))
    ids = push_votes(rds, config, 2000)
    async with (
        worker_process(first, tmp_path / "first.log") as first_proc,
        worker_process(twin, tmp_path / "twin.log") as twin_proc,
    ):
        await wait_answering(first_url)
        await wait_answering(twin_url)
        await wait_until(lambda: row_count(config) >= 2000, what="the first batch of votes")
        ids += push_votes(rds, config, 2000, prefix="while-both-live")
        await wait_until(lambda: row_count(config) >= 4000, what="votes pushed while both live")
        # Whichever of the two started first holds the id; the other took nothing at all.
        holder, other = first_url, twin_url
        if await metric(first_url, "worker_id_conflict") == 1:
            holder, other = twin_url, first_url
        assert await metric(other, "worker_id_conflict") == 1
        assert "votes_processed_total{" not in (await get(other + "/metrics")).text
        ready = await get(other + "/ready")
        assert ready.status_code == 503
        assert ready.json()["worker_id_conflict"] is True
        assert (await get(holder + "/ready")).status_code == 200
        # The holder stops; the other takes the id over and goes on.
        holder_proc, other_proc = (
            (first_proc, twin_proc) if holder == first_url else (twin_proc, first_proc)
        )
        holder_proc.send_signal(signal.SIGTERM)
        assert await exit_status(holder_proc, within_s=first.shutdown_timeout_s + 5) == 0
        await wait_until(
            lambda: rds.get(f"{config.vote_queue}:worker:{config.worker_id}") is not None,
            what="the other to take the worker id",
        )
        ids += push_votes(rds, config, 1000, prefix="after")
        await wait_until(lambda: row_count(config) >= 5000, what="votes after the handover")
        assert await metric(other, "worker_id_conflict") == 0
        other_proc.send_signal(signal.SIGTERM)
        assert await exit_status(other_proc, within_s=first.shutdown_timeout_s + 5) == 0
    logs = [(tmp_path / name).read_text() for name in ("first.log", "twin.log")]
    assert sum("worker id in use by another live process" in text for text in logs) == 1
    assert voter_counts(config) == dict.fromkeys(ids, 1)
    assert inflight_keys(rds, config) == []
