"""Cancellation at arbitrary checkpoints: the in-flight list or the ledger always tells the truth.

The real service runs in this Trio run and is cancelled, 40 times in a row, while votes keep
arriving: in half the rounds after a random delay from its start (start-up included), in the
other half a moment after a batch is seen in flight, so that the cut lands mid-batch (mid-take,
mid-INSERT, between COMMIT and its reply, mid-finish). Between rounds the test records what each
cut left: batches in flight (their lists), and of those, batches already in the ledger
(committed, not yet finished). A last worker then drains normally, and every vote must be stored
exactly once. The test fails if too few rounds were really cut with a batch in flight: then it
would have tested start-up and idle waits only.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import replace
from functools import partial
from typing import Any

import pytest
import redis
import trio

from tests.support.stores import inflight_keys, push_votes, row_count, sql, voter_counts
from tests.support.waiting import wait_until
from trio_worker import service
from trio_worker.config import Config

pytestmark = [pytest.mark.race, pytest.mark.slow, pytest.mark.timeout(120)]

ROUNDS = 40
# Of the 20 rounds aimed at a batch in flight, at least this many must have left one.
MID_BATCH_AT_LEAST = 8
# Batches' worth of votes queued before an aimed round.
AIMED_BATCHES = 5


async def cancel_one_round(cfg: Config, rds: redis.Redis, rng: random.Random, aimed: bool) -> None:
    """Run the service and cancel it: after a random delay, or just after a batch shows."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(service.run, cfg, stop=trio.Event()))
        if aimed:
            # Polled in a thread: the worker runs on this very event loop.
            with trio.move_on_after(5):
                while not await trio.to_thread.run_sync(inflight_keys, rds, cfg):  # noqa: ASYNC110 (Redis state)
                    await trio.sleep(0.002)
            await trio.sleep(rng.uniform(0.0, 0.005))
        else:
            await trio.sleep(rng.uniform(0.0, 0.4))
        nursery.cancel_scope.cancel()


def what_the_cut_left(rds: redis.Redis, cfg: Config) -> tuple[int, int]:
    """(batches in flight, of which committed already) right after a round."""
    keys = [k.decode() for k in inflight_keys(rds, cfg)]
    if not keys:
        return 0, 0
    ids = ",".join(f"'{k.rsplit(':', 1)[1]}'" for k in keys)
    committed = sql(cfg, f"SELECT COUNT(*) FROM vote_batches WHERE batch_id IN ({ids})")
    return len(keys), int(committed[0][0]) if committed else 0


async def test_cancelled_at_any_checkpoint_nothing_is_half_done(
    config: Config, rds: redis.Redis, start_worker: Any, seed: int
) -> None:
    rng = random.Random(f"{seed}-cancel")
    # The same worker id every time, as a restarted process: it recovers its own lists at once.
    cfg = replace(config, batch_size=rng.choice([7, 50, 300]), heartbeat_ttl_s=1)
    ids: list[str] = []
    cuts: Counter[str] = Counter()
    for round_ in range(ROUNDS):
        aimed = round_ % 2 == 1
        count = rng.randint(100, 800)
        if aimed:
            # Work for several batches, so the cut can land while one is in flight: a lone
            # batch is taken, committed and finished within the few ms it takes to see it.
            count = max(count, AIMED_BATCHES * cfg.batch_size)
        ids += push_votes(rds, config, count, prefix=f"r{round_}-")
        await cancel_one_round(cfg, rds, rng, aimed)
        in_flight, committed = what_the_cut_left(rds, cfg)
        if in_flight:
            cuts["aimed rounds cut mid-batch" if aimed else "random rounds cut mid-batch"] += 1
        if committed:
            cuts["rounds cut between COMMIT and finish"] += 1
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
    assert cuts["aimed rounds cut mid-batch"] >= MID_BATCH_AT_LEAST, (
        f"seed {seed}: too few cuts with a batch in flight: {dict(cuts)}"
    )
    print(f"seed {seed}: {dict(cuts)}")
