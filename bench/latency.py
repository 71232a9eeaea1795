"""Push→commit latency at offered rates, seen from outside the worker, and right after start.

A producer *process* ``LPUSH``es the votes due every ~0.5 ms; each voter_id is
``<CLOCK_MONOTONIC ns at push>.<seq>``. One connection fetches the rows above the highest id
seen so far every ~1 ms; latency = (monotonic time the fetch was sent) - (push time). It
over-states the true push→commit time by at most one poll period and never understates it by
more than the fetch's own execution.

Two stages share one fresh worker:

- startup: the worker is started on an empty queue, ``/ready`` is polled every ~1 ms, and the
  producer (already forked, waiting) starts offering 2,000/s the moment the first 200 arrives.
  The first ``STARTUP_WINDOW_S`` seconds (by push time, from that 200) are reported apart from
  the rest;
- steady rates: then each offered rate in turn; the first ``WARMUP_S`` of each rate (the
  previous rate's tail, the producer starting) is reported apart from its steady state.
"""

from __future__ import annotations

import multiprocessing
import time
from multiprocessing.synchronize import Event
from typing import Any

from bench.common import QUEUE, RESULTS, done_progress, pct, progress, vote
from bench.stores import Stores, inflight_left, reset
from bench.watcher import Watcher
from bench.worker import Worker

WARMUP_S = 1.0  # per steady rate: reported apart, not in its p50/p90/p99/max
STARTUP_WINDOW_S = 2.0  # after the first 200 from /ready: reported apart from the rest
STARTUP_RATE = 2000.0

Samples = list[tuple[int, float]]  # (push time ns, latency ms)


def _produce(stores: Stores, rate: float, seconds: float, go: Event | None) -> None:
    """A producer process: LPUSH at a steady rate; each voter_id starts with its push time."""
    r = stores.redis()
    r.ping()  # connected before the start signal
    if go is not None:
        go.wait()
    total = int(rate * seconds)
    sent = 0
    started = time.monotonic()
    while sent < total:
        due = min(total, int((time.monotonic() - started) * rate) + 1)
        if due > sent:
            ns, now = time.monotonic_ns(), time.time()
            r.lpush(QUEUE, *[vote(f"{ns}.{i}", i, now) for i in range(sent, due)])
            sent = due
        time.sleep(0.0005)
    r.close()


def start_producer(stores: Stores, rate: float, seconds: float, go: Event | None = None) -> Any:
    """The producer process, started; with ``go`` it connects, then waits for the signal."""
    producer = multiprocessing.Process(target=_produce, args=(stores, rate, seconds, go))
    producer.start()
    return producer


def collect(watcher: Watcher, rate: float, seconds: float, producer: Any) -> Samples:
    """Watch ``producer``'s votes until every one is seen committed."""
    total = int(rate * seconds)
    floor = watcher.max_id()  # every id up to here is seen (or belongs to earlier stages)
    above: set[int] = set()  # ids seen beyond ``floor`` (batches may commit out of order)
    gap_since: float | None = None
    samples: Samples = []
    deadline = time.monotonic() + seconds + 30
    last_progress = 0.0
    while len(samples) < total and time.monotonic() < deadline:
        seen_ns = time.monotonic_ns()  # rows returned were committed before this query's snapshot
        for row_id, voter_id in watcher.new_rows(floor):
            if row_id in above:
                continue
            above.add(row_id)
            pushed_ns = int(voter_id.partition(".")[0])
            samples.append((pushed_ns, (seen_ns - pushed_ns) / 1e6))
        while floor + 1 in above:
            floor += 1
            above.discard(floor)
        # An id that never shows up (a rolled-back statement) must not hold the floor forever.
        if not above:
            gap_since = None
        elif gap_since is None:
            gap_since = time.monotonic()
        elif time.monotonic() - gap_since > 2:
            floor, above, gap_since = max(above), set(), None
        if time.monotonic() - last_progress > 0.25:
            last_progress = time.monotonic()
            progress(f"  latency at {rate:,.0f}/s: {len(samples):,}/{total:,} committed")
        time.sleep(0.001)
    producer.join()
    done_progress()
    if len(samples) < total:
        raise SystemExit(f"latency at {rate:,.0f}/s: only {len(samples)}/{total} votes committed")
    return samples


def stats(ms: list[float]) -> dict[str, float]:
    return {
        "votes": len(ms),
        "p50_ms": pct(ms, 50),
        "p90_ms": pct(ms, 90),
        "p99_ms": pct(ms, 99),
        "max_ms": max(ms) if ms else float("nan"),
    }


def split(samples: Samples, at_ns: int) -> tuple[list[float], list[float]]:
    """Latencies of votes pushed before ``at_ns``, and of the rest."""
    return [ms for p, ms in samples if p < at_ns], [ms for p, ms in samples if p >= at_ns]


def steady(stores: Stores, watcher: Watcher, rate: float, seconds: float) -> dict[str, Any]:
    """One offered rate on a running worker; its first ``WARMUP_S`` reported apart."""
    samples = collect(watcher, rate, seconds, start_producer(stores, rate, seconds))
    start_ns = min(p for p, _ in samples)
    end_ns = max(p for p, _ in samples)
    warmup, kept = split(samples, start_ns + int(WARMUP_S * 1e9))
    return {
        "offered_per_s": rate,
        "achieved_per_s": len(samples) / ((end_ns - start_ns) / 1e9) if end_ns > start_ns else rate,
        **stats(kept),
        "warmup": stats(warmup),
    }


def startup_then_rates(
    stores: Stores, rates: list[float], seconds: float, startup_seconds: float
) -> dict[str, Any]:
    """A fresh worker offered ``STARTUP_RATE`` from its first 200 on /ready, then ``rates``."""
    reset(stores)
    go = multiprocessing.Event()
    producer = start_producer(stores, STARTUP_RATE, startup_seconds, go)
    worker = Worker(stores, RESULTS / "worker.log.tmp")
    watcher = Watcher(stores)
    result: dict[str, Any] = {}
    try:
        ready_ns = worker.wait_ready(poll_s=0.001)
        go.set()
        samples = collect(watcher, STARTUP_RATE, startup_seconds, producer)
        first, rest = split(samples, ready_ns + int(STARTUP_WINDOW_S * 1e9))
        result["startup"] = {
            "offered_per_s": STARTUP_RATE,
            "seconds": startup_seconds,
            "ready_after_start_ms": (ready_ns - worker.started_ns) / 1e6,
            "first_push_after_ready_ms": (min(p for p, _ in samples) - ready_ns) / 1e6,
            "window_s": STARTUP_WINDOW_S,
            "first_window": stats(first),
            "after_window": stats(rest),
        }
        result["latency"] = [steady(stores, watcher, rate, seconds) for rate in rates]
    finally:
        if producer.is_alive():  # the stage failed before the producer was done
            producer.terminate()
            producer.join()
        watcher.close()
        result["worker_exit_status"] = worker.stop()
        result["worker_warnings"] = worker.warnings()
    result["inflight_left"] = inflight_left(stores)
    return result
