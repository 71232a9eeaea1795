"""A backlog drained by a fresh worker: votes/s, the worker's CPU per vote, memory, servers' CPU.

How the worker is watched without slowing it: MariaDB is asked only until the first commit
shows (``MAX(id)``), and again once the backlog is all taken (the ledger's ``SUM(votes)``,
exact, for the last few batches). A query on ``votes`` every few ms, even ``MAX(id)``, contends
with the worker's inserts for the table's hottest index page and cost a one-connection insert
loop 2-15% of its rate here (docs/performance.md). In between, progress is the backlog's length
in Redis, which costs Redis microseconds.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import psutil

from bench.baselines import CEILING_ROWS_PER_STATEMENT, ceiling
from bench.common import QUEUE, RESULTS, done_progress, machine_busy_s, progress, say
from bench.reference import reference_us_per_vote
from bench.stores import Stores, inflight_left, push_backlog, reset
from bench.watcher import Watcher
from bench.worker import Cpu, Worker, cpu


def watch(worker: Worker, watcher: Watcher, stores: Stores, n: int) -> dict[str, Any]:
    """Wait for the worker to commit a backlog of ``n``; measure from first commit to last."""
    procs = {"worker": worker.ps, **worker.servers}
    r = stores.redis()
    rss: list[tuple[float, float]] = []  # (fraction taken or committed, MB)
    timeout = time.monotonic() + 60 + n / 1000
    while not watcher.max_id():
        if time.monotonic() > timeout or worker.proc.poll() is not None:
            raise SystemExit("drain did not start")
        time.sleep(0.002)
    first_ns, first_rows = time.monotonic_ns(), watcher.committed()
    before = {name: cpu(p) for name, p in procs.items()}
    me = psutil.Process()
    busy_before, mine_before = machine_busy_s(), sum(me.cpu_times()[:2])
    next_rss = 0.0
    while True:
        now = time.monotonic()
        queued = int(r.llen(QUEUE))
        # Once nothing is queued, the ledger (exact: its rows commit with their votes) says when
        # the last batch is in.
        done = n - queued if queued else watcher.committed()
        if now >= next_rss:
            rss.append((done / n, worker.rss_mb()))
            next_rss = now + 0.05
            progress(f"  drain: {done:,}/{n:,} {'taken' if queued else 'committed'}")
        if done >= n and not queued:
            break
        if now > timeout or worker.proc.poll() is not None:
            raise SystemExit(f"drain did not finish: {done:,} of {n:,}")
        time.sleep(0.002)
    last_ns = time.monotonic_ns()
    used: dict[str, Cpu] = {}
    for name, p in procs.items():
        with contextlib.suppress(psutil.Error):
            used[name] = cpu(p) - before[name]
    busy = machine_busy_s() - busy_before
    mine = sum(me.cpu_times()[:2]) - mine_before
    done_progress()
    r.close()
    committed = watcher.committed()
    if committed != n:
        raise SystemExit(f"drain: the ledger says {committed:,} committed, not {n:,}")
    elapsed = (last_ns - first_ns) / 1e9
    votes = n - first_rows  # stored between the two readings
    rss.append((1.0, worker.rss_mb()))
    w = used["worker"]
    return {
        "votes": n,
        "votes_timed": votes,
        "seconds": elapsed,
        "window_ns": [first_ns, last_ns],
        "votes_per_s": votes / elapsed if elapsed > 0 else float("nan"),
        "peak_rss_mb": worker.peak_rss_mb(),
        # CPU seconds per second of drain, from the first commit: who is the bottleneck.
        "cpu_cores_busy": {name: round(c.total / elapsed, 2) for name, c in used.items()},
        # Everything else on the machine (other engineers' tests, this process's own watching
        # excluded): a drain beside a busy neighbour is a disturbed one.
        "others_cores_busy": round(
            (busy - mine - sum(c.total for c in used.values())) / elapsed, 2
        ),
        "worker_cpu_us_per_vote": w.total / votes * 1e6,
        "worker_user_us_per_vote": w.user / votes * 1e6,
        "worker_system_us_per_vote": w.system / votes * 1e6,
        "worker_run_queue_wait_us_per_vote": w.run_queue_wait / votes * 1e6,
        "mariadb_cpu_us_per_vote": used["mariadb"].total / votes * 1e6
        if "mariadb" in used
        else float("nan"),
        "rss_mb_by_progress": {
            f"{q:.0%}": round(next((mb for f, mb in rss if f >= q), rss[-1][1]), 1)
            for q in (0.1, 0.25, 0.5, 0.75, 1.0)
        },
    }


def drain(
    stores: Stores,
    n: int,
    *,
    batch_size: int | None = None,
    argv: list[str] | None = None,
    extra_env: dict[str, str] | None = None,
    during: Callable[[Worker], AbstractContextManager[object]] | None = None,
    after: Callable[[Worker, Watcher], Any] | None = None,
) -> dict[str, Any]:
    """``n`` votes pushed, then a fresh worker started to drain them; then ``after`` if given.

    ``during`` wraps the drain once ``/ready`` says 200 (a profiler attached to the worker).
    The reference loop (``bench.reference``) is timed just before the worker starts.
    """
    reset(stores)
    push_backlog(stores, n, "d")
    load = os.getloadavg()[0]
    reference = reference_us_per_vote()
    worker = Worker(stores, RESULTS / "worker.log.tmp", batch_size=batch_size, argv=argv,
                    extra_env=extra_env)  # fmt: skip
    watcher = Watcher(stores)
    try:
        if during is not None:
            worker.wait_ready()
            with during(worker):
                result = watch(worker, watcher, stores, n)
        else:
            result = watch(worker, watcher, stores, n)
        result["batches"] = watcher.batches()
        result["load_avg_1m_before"] = load
        result["reference_us_per_vote"] = reference
        result["worker_cpu_vs_reference"] = result["worker_cpu_us_per_vote"] / reference
        if after is not None:
            result["after"] = after(worker, watcher)
    finally:
        watcher.close()
        status = worker.stop()
    result["worker_exit_status"] = status
    result["worker_warnings"] = worker.warnings()
    result["inflight_left"] = inflight_left(stores)
    return result


def drains_between_ceilings(
    stores: Stores,
    count: int,
    runs: list[dict[str, str]],
    batch_size: int | None = None,
    labels: list[str] | None = None,
) -> dict[str, Any]:
    """ceiling, drain, ceiling, drain, ..., ceiling: each drain against the mean of its two.

    One drain per entry of ``runs``: the worker's extra environment for that drain (``{}``:
    default settings); ``labels`` name them in the progress lines.
    """
    say(f"ceiling: {count:,} rows as {CEILING_ROWS_PER_STATEMENT:,}-row INSERTs")
    ceilings = [ceiling(stores, count)]
    say(f"  {ceilings[-1]['votes_per_s']:,.0f} votes/s")
    drains = []
    for k, env in enumerate(runs, 1):
        settings = " ".join(
            ([] if batch_size is None else [f"BATCH_SIZE={batch_size}"])
            + [f"{name}={value}" for name, value in env.items()]
        )
        label = labels[k - 1] if labels else settings or "default settings"
        say(f"drain {k}/{len(runs)}: {count:,} votes, a fresh worker with {label}")
        d = drain(stores, count, batch_size=batch_size, extra_env=env)
        say(f"  {d['votes_per_s']:,.0f} votes/s, worker {d['worker_cpu_us_per_vote']:.2f} us/vote,"
            f" peak RSS {d['peak_rss_mb']:.0f} MB")  # fmt: skip
        say("ceiling again, after it")
        ceilings.append(ceiling(stores, count))
        before, after = ceilings[-2]["votes_per_s"], ceilings[-1]["votes_per_s"]
        d.update(ceiling_before=before, ceiling_after=after)
        d["vs_ceiling"] = d["votes_per_s"] / ((before + after) / 2)
        say(f"  {after:,.0f} votes/s; drain / ceiling {d['vs_ceiling']:.2f}")
        drains.append(d)
    return {"ceilings": ceilings, "drains": drains}
