"""Drain throughput and push→commit p99 for each ``BATCH_SIZE``: one fresh worker per point."""

from __future__ import annotations

from typing import Any

from bench.common import say
from bench.drain import drain
from bench.latency import steady
from bench.stores import Stores
from bench.watcher import Watcher
from bench.worker import Worker


def sweep(
    stores: Stores, sizes: list[int], count: int, rate: float, seconds: float
) -> list[dict[str, Any]]:
    """Each point is one short run (``count`` votes, ``seconds`` of load): noisier than the
    main drains, and only the default size's latency carries a target."""
    points = []
    for size in sizes:
        say(f"sweep: BATCH_SIZE={size}: drain {count:,}, latency at {rate:,.0f}/s")

        def then(worker: Worker, watcher: Watcher) -> dict[str, Any]:
            return steady(stores, watcher, rate, seconds)

        out = drain(stores, count, batch_size=size, after=then)
        latency = out.pop("after")
        points.append({"batch_size": size, "drain": out, "latency": latency,
                       "worker_exit_status": out["worker_exit_status"]})  # fmt: skip
        say(f"  {out['votes_per_s']:,.0f} votes/s, "
            f"p99 {latency['p99_ms']:.1f} ms")  # fmt: skip
    return points
