"""Timing logic on virtual time (autojump_clock): batch filling, backoff, heartbeat period."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace

import pytest
import trio
import trio.testing

from trio_worker.config import from_env
from trio_worker.liveness import Liveness
from trio_worker.metrics import Metrics
from trio_worker.mysql.clock import ServerClock
from trio_worker.periodic import Every
from trio_worker.pipeline import BLOCK_S, Consumer, Holdings, Permits
from trio_worker.pipeline.heartbeat import Lease, period_s
from trio_worker.pipeline.shared import Shared
from trio_worker.queue import BATCH_BYTES, Item, Keys, Taken
from trio_worker.retry import Backoff
from trio_worker.status import Status


class TrickleQueue:
    """An in-memory stand-in for RedisQueue: votes arrive one every ``every_s`` seconds.

    ``take`` hands out what has arrived (at most ``chunk`` per call, as the real script does
    with TAKE_CHUNK) and reports how many are still waiting.
    """

    def __init__(self, arrivals: list[float], chunk: int = 1000) -> None:
        self.keys = Keys("q", "q:dead")
        self.arrivals = sorted(arrivals)
        self.chunk = chunk
        self.taken = 0
        self.calls: list[float] = []

    def _arrived(self) -> int:
        now = trio.current_time()
        return sum(1 for t in self.arrivals if t <= now)

    def _move(self, count: int) -> Taken:
        n = min(count, self.chunk, self._arrived() - self.taken)
        items: list[Item] = [
            b'{"voter_id": "%d", "vote": "a"}' % (self.taken + i) for i in range(n)
        ]
        self.taken += n
        return Taken(items, self._arrived() - self.taken, False)

    async def take(
        self,
        key: str,
        count: int,
        *,
        append: bool,
        drop: Sequence[str] = (),
        budget: int = BATCH_BYTES,
    ) -> Taken:
        await trio.sleep(0.001)  # a round trip
        self.calls.append(trio.current_time())
        return self._move(count)

    async def ping(self) -> None:
        await trio.sleep(0.001)

    async def read(self, key: str, *, rename_to: str | None = None) -> list[Item]:
        raise AssertionError("no Redis failure here: nothing is re-read")

    async def wait_take(
        self, key: str, count: int, timeout_s: float, *, drop: Sequence[str] = ()
    ) -> Taken:
        """Blocks until a vote arrives (or the timeout), then takes: one round trip."""
        deadline = trio.current_time() + timeout_s
        while self._arrived() <= self.taken and trio.current_time() < deadline:  # noqa: ASYNC110
            await trio.sleep(0.001)
        await trio.sleep(0.001)
        self.calls.append(trio.current_time())
        return self._move(count)


def pipeline_over(queue: TrickleQueue, **changes: object) -> Consumer:
    config = replace(from_env({"WORKER_ID": "t"}), **changes)  # type: ignore[arg-type]
    metrics = Metrics()
    live = Liveness(60)
    shared = Shared(config, Status.for_metrics(metrics), metrics, Holdings(), live)
    lease = Lease()
    lease.hold()
    return Consumer(shared, queue, Permits(1), lease, ServerClock())


async def test_an_idle_queue_flushes_at_once(autojump_clock: trio.abc.Clock) -> None:
    queue = TrickleQueue([0.0, 0.0, 0.0])
    start = trio.current_time()
    batch = await pipeline_over(queue).fill("1-test-1")
    assert batch is not None
    assert batch.size == 3
    # One take round trip and no lingering, although FLUSH_INTERVAL_MS is 20 ms.
    assert trio.current_time() - start == pytest.approx(0.001)


async def test_a_full_batch_is_sent_without_waiting(autojump_clock: trio.abc.Clock) -> None:
    queue = TrickleQueue([0.0] * 5000, chunk=1000)
    batch = await pipeline_over(queue, batch_size=2500).fill("1-test-1")
    assert batch is not None
    assert batch.size == 2500
    assert len(queue.calls) == 3  # 1000 + 1000 + 500: chunks, until full


async def test_a_trickle_is_cut_at_the_flush_interval(autojump_clock: trio.abc.Clock) -> None:
    # The queue never runs dry (each take of 1 leaves more behind), so only the interval ends it.
    queue = TrickleQueue([0.0] * 100_000, chunk=1)
    start = trio.current_time()
    batch = await pipeline_over(queue, batch_size=1000, flush_interval_s=0.020).fill("1-test-1")
    assert batch is not None
    elapsed = trio.current_time() - start
    assert 0.020 <= elapsed <= 0.022
    assert batch.size == len(queue.calls)


async def test_an_empty_queue_blocks_briefly_then_returns_nothing(
    autojump_clock: trio.abc.Clock,
) -> None:
    queue = TrickleQueue([])
    start = trio.current_time()
    assert await pipeline_over(queue).fill("1-test-1") is None
    assert trio.current_time() - start == pytest.approx(0.001 + BLOCK_S, abs=0.002)


async def test_the_first_vote_after_idle_is_sent_immediately(
    autojump_clock: trio.abc.Clock,
) -> None:
    queue = TrickleQueue([0.3])
    batch = await pipeline_over(queue).fill("1-test-1")
    assert batch is not None
    assert batch.size == 1
    assert trio.current_time() == pytest.approx(0.3 + 0.001, abs=0.002)


async def test_backoff_is_capped_exponential_with_jitter(autojump_clock: trio.abc.Clock) -> None:
    backoff = Backoff(base_s=0.05, cap_s=5.0, rng=random.Random(7))
    slept = []
    for _ in range(10):
        before = trio.current_time()
        await backoff.sleep()
        slept.append(trio.current_time() - before)
    for n, delay in enumerate(slept):
        ceiling = min(5.0, 0.05 * 2**n)
        assert ceiling / 2 <= delay <= ceiling
    assert max(slept) <= 5.0
    backoff.reset()
    assert backoff.next_delay() <= 0.05


def test_heartbeat_period_is_a_third_of_the_ttl_at_most_a_second() -> None:
    assert period_s(15) == 1.0
    assert period_s(1.5) == pytest.approx(0.5)


async def test_periodic_work_runs_now_then_on_deadlines_that_do_not_drift(
    autojump_clock: trio.testing.MockClock,
) -> None:
    done = trio.Event()
    start = trio.current_time()
    seen: list[float] = []
    ticks = Every(1.0, done)
    while await ticks.next():
        seen.append(trio.current_time() - start)
        if len(seen) == 2:
            await trio.sleep(0.3)  # the work's own time: the next deadline stays put
        if len(seen) == 4:
            await trio.sleep(2.5)  # overran a deadline: again at once, periods count from then
        if len(seen) == 6:
            done.set()
    assert seen == pytest.approx([0.0, 1.0, 2.0, 3.0, 5.5, 6.5])


async def test_periodic_work_stops_at_once_when_done(
    autojump_clock: trio.testing.MockClock,
) -> None:
    done = trio.Event()
    start = trio.current_time()
    async with trio.open_nursery() as nursery:

        async def finish_soon() -> None:
            await trio.sleep(0.25)
            done.set()

        nursery.start_soon(finish_soon)
        ticks = Every(10.0, done)
        while await ticks.next():
            pass
    assert trio.current_time() - start == pytest.approx(0.25)


async def test_periodic_work_can_wait_a_period_before_its_first_run(
    autojump_clock: trio.testing.MockClock,
) -> None:
    done = trio.Event()
    start = trio.current_time()
    ticks = Every(2.0, done, now=False)
    assert await ticks.next()
    assert trio.current_time() - start == pytest.approx(2.0)
