"""Cancellation at arbitrary checkpoints: the in-flight list or the ledger always tells the truth.

The real service runs in this Trio run under a cancel scope that fires after a random delay
(from the printed seed), many times in a row, while votes keep arriving: each cancellation lands
at whatever checkpoint the worker is at (mid-take, mid-INSERT, between COMMIT and its reply,
mid-finish). A last worker then drains normally, and every vote must be stored exactly once.
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

import pytest
import redis
import trio

from tests.conftest import wait_until
from tests.helpers import inflight_keys, push_votes, row_count, voter_counts
from trio_worker import service
from trio_worker.config import Config

pytestmark = [pytest.mark.race, pytest.mark.timeout(90)]


async def test_cancelled_at_any_checkpoint_nothing_is_half_done(
    config: Config, rds: redis.Redis, start_worker: Any, seed: int
) -> None:
    rng = random.Random(f"{seed}-cancel")
    # The same worker id every time, as a restarted process: it recovers its own lists at once.
    cfg = replace(config, batch_size=rng.choice([7, 50, 300]), heartbeat_ttl_s=1)
    ids: list[str] = []
    for round_ in range(40):
        ids += push_votes(rds, config, rng.randint(0, 400), prefix=f"r{round_}-")
        with trio.move_on_after(rng.uniform(0.0, 0.4)):
            await service.run(cfg, stop=trio.Event())
    last = await start_worker(cfg)
    await wait_until(lambda: row_count(config) >= len(ids), timeout_s=40, what="every vote")
    last.stop.set()
    await wait_until(lambda: last.exit_status, what="the last worker to exit")
    assert last.exit_status == [0]
    stored = voter_counts(config)
    twice = [v for v, n in stored.items() if n != 1]
    assert not twice, f"seed {seed}: stored more than once: {twice[:5]}"
    missing = set(ids) - set(stored)
    assert not missing, f"seed {seed}: lost: {sorted(missing)[:5]}"
    assert inflight_keys(rds, config) == []
