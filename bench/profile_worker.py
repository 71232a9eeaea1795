"""Where the worker's CPU goes during a drain: ``python -m bench.profile_worker STEP``.

Every step drains ``--count`` votes (default 1,000,000) with a fresh worker at default settings
and measures from the first stored row to the last (``bench.drain``):

- ``cpu``: ``--runs`` plain drains (nothing attached); the worker's user and system CPU per
  vote, and its run-queue wait (runnable, not running) beside it;
- ``spy``: drains under ``py-spy record --format raw --nolineno``, attached once ``/ready`` says
  200 (``--native`` for C extensions: py-spy then pauses the worker at each sample);
- ``cpuprof``: drains under ``bench.instrument``'s CPU-time sampler (SIGPROF per scheduler tick
  of CPU), the samples kept only between the first stored row and the last;
- ``perf``: drains under ``perf record -e cpu-clock``: self CPU by shared object and symbol
  (C extensions, libpython, the kernel);
- ``summary FILE...``: collapsed stacks (``spy``, ``cpuprof``) summed and summarised: by concern,
  top entries by self and by inclusive time; ``--cpu-us-per-vote`` turns shares into us/batch;
- ``hops``: one drain under ``bench.instrument``'s hop recorder: Trio→asyncio hops per batch;
- ``hop-cost``: the CPU of one hop in isolation, and of a redis-py PING with and without it;
- ``markdown``: the tables of everything found in ``--dir`` (``bench.profile_report``).

Results: ``bench/results/profile/`` (``--dir``): ``<step>.json``, the stacks; and printed tables.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from bench.common import RESULTS, say
from bench.drain import drain
from bench.profile_report import markdown
from bench.profiling import attached, format_summary, py_spy_cmd, read_collapsed, summarise
from bench.stores import Stores, cleanup

INSTRUMENT = ["-m", "bench.instrument", "run"]
STEPS = ["cpu", "spy", "cpuprof", "perf", "hops", "hop-cost", "summary", "markdown"]
OFFLINE = ("summary", "markdown", "hop-cost")  # steps that drain nothing
TRANSACTION = "commit.<locals>.transaction"  # one hop per batch committed (mysql.ledger.commit)


def line(d: dict[str, Any]) -> str:
    return (
        f"  {d['votes_per_s']:>9,.0f} votes/s  worker CPU {d['worker_cpu_us_per_vote']:.3f} us/vote"
        f" (user {d['worker_user_us_per_vote']:.3f} + sys {d['worker_system_us_per_vote']:.3f};"
        f" run-queue wait {d['worker_run_queue_wait_us_per_vote']:.3f}; reference loop"
        f" {d['reference_us_per_vote']:.3f})  cores busy "
        f"{d['cpu_cores_busy']}  load {d['load_avg_1m_before']:.2f}  exit {d['worker_exit_status']}"
    )


def window_collapsed(dump: Path, window: list[int], out: Path) -> int:
    """The CPU sampler's samples taken between the first stored row and the last, collapsed."""
    data = json.loads(dump.read_text())
    start, end = window
    counts = Counter(i for t, i in data["samples"] if start <= t <= end)
    out.write_text("".join(f"{data['stacks'][i]} {n}\n" for i, n in counts.most_common()))
    return sum(counts.values())


def perf_report(data: Path) -> str:
    """Self CPU by shared object, then by symbol: C extensions and the kernel, seen by perf."""
    parts = []
    for sort, limit in (("dso", 15), ("dso,sym", 30)):
        text = subprocess.run(
            ["perf", "report", "-i", str(data), "--no-children", "--sort", sort, "--stdio"],
            capture_output=True, text=True, check=False,
        ).stdout  # fmt: skip
        rows = [r for r in text.splitlines() if r.strip() and not r.startswith("#")]
        parts.append(f"perf: self CPU by {sort}\n" + "\n".join(rows[:limit]))
    return "\n\n".join(parts)


def hops_per_batch(recorded: dict[str, Any], window: list[int]) -> dict[str, Any]:
    start, end = window
    calls = recorded["hops"]
    by_callee = Counter(name for t, name in calls if start <= t <= end)
    batches = by_callee.get(TRANSACTION, 0)
    hops = sum(by_callee.values())
    handles = sum(1 for t in recorded["asyncio_handles"] if start <= t <= end)
    steps = sum(1 for t in recorded["trio_steps"] if start <= t <= end)
    step_tasks = Counter(
        name
        for t, name in zip(
            recorded["trio_steps"], recorded.get("trio_step_tasks", []), strict=False
        )
        if start <= t <= end
    )
    return {
        "hops_in_window": hops,
        "batches_in_window": batches,
        "hops_per_batch": hops / batches if batches else float("nan"),
        "asyncio_callbacks_per_batch": handles / batches if batches else float("nan"),
        "trio_task_steps_per_batch": steps / batches if batches else float("nan"),
        "by_callee_per_batch": {k: v / batches for k, v in by_callee.most_common()}
        if batches
        else {},
        "trio_steps_by_task_per_batch": {k: v / batches for k, v in step_tasks.most_common(12)}
        if batches
        else {},
        "hops_whole_run": len(calls),
    }


async def _empty() -> None:
    return None


# Plain asyncio, in a process of its own: once trio_asyncio is imported, asyncio.run() itself
# runs on trio-asyncio's SyncTrioEventLoop, which is not the baseline wanted here.
_PLAIN_ASYNCIO = """
import asyncio, json, sys, time
import redis.asyncio as aredis
host, port, calls, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
async def empty():
    return None
async def main():
    out = {}
    r = aredis.Redis(host=host, port=port)
    await r.ping()
    for _ in range(repeats):
        for name, fn in (("plain asyncio: await empty coroutine", empty),
                         ("plain asyncio: redis-py PING (no Trio)", r.ping)):
            t0 = time.process_time()
            for _ in range(calls):
                await fn()
            out.setdefault(name, []).append((time.process_time() - t0) / calls * 1e6)
    await r.aclose()
    assert "trio_asyncio" not in sys.modules
    print(json.dumps(out))
asyncio.run(main())
"""


def hop_cost(stores: Stores, calls: int, repeats: int) -> dict[str, Any]:
    """CPU per call (process_time: waiting for Redis is not counted), best and median."""
    import redis.asyncio as aredis
    import trio
    import trio_asyncio

    aio_as_trio = trio_asyncio.aio_as_trio
    r = aredis.Redis(host=stores.redis_host, port=stores.redis_port)

    async def pings(n: int) -> None:
        for _ in range(n):
            await r.ping()

    async def trio_side() -> dict[str, list[float]]:
        out: dict[str, list[float]] = defaultdict(list)
        async with trio_asyncio.open_loop():
            await aio_as_trio(r.ping)()  # connected before timing
            for _ in range(repeats):
                for name, fn in (
                    ("trio checkpoint (no hop)", trio.lowlevel.checkpoint),
                    # a new wrapper per call, as the worker's bridge.aio does
                    ("aio_as_trio(empty coroutine)", lambda: aio_as_trio(_empty)()),
                    ("aio_as_trio(redis-py PING)", lambda: aio_as_trio(r.ping)()),
                ):
                    t0 = time.process_time()
                    for _ in range(calls):
                        await fn()
                    out[name].append((time.process_time() - t0) / calls * 1e6)
                t0 = time.process_time()
                await aio_as_trio(pings)(calls)
                out["redis-py PING on trio-asyncio's loop, no hop (all in one)"].append(
                    (time.process_time() - t0) / calls * 1e6
                )
            await aio_as_trio(r.aclose)()
        return out

    results = trio.run(trio_side)
    plain = subprocess.run(
        [sys.executable, "-c", _PLAIN_ASYNCIO, stores.redis_host, str(stores.redis_port),
         str(calls), str(repeats)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    results.update(json.loads(plain))
    return {
        name: {"best_us": min(v), "median_us": statistics.median(v), "runs_us": v}
        for name, v in results.items()
    }


def step(args: argparse.Namespace, stores: Stores) -> Any:
    if args.step == "markdown":
        print(markdown(args.dir))
        return None
    if args.step == "summary":
        result = summarise(read_collapsed(args.files))
        us_per_batch = args.cpu_us_per_vote * 1000 if args.cpu_us_per_vote else None
        print(format_summary(result, us_per_batch))
        return result
    if args.step == "hop-cost":
        result = hop_cost(stores, args.calls, args.runs)
        for name, r in result.items():
            print(f"  {r['best_us']:8.2f} best  {r['median_us']:8.2f} median us/call  {name}")
        return result
    if args.step == "hops":
        dump = RESULTS / "hops.tmp"
        d = drain(stores, args.count, argv=INSTRUMENT, extra_env={"BENCH_HOPS_OUT": str(dump)})
        say(line(d))
        recorded = json.loads(dump.read_text())
        dump.unlink()
        result = {"drain": d, **hops_per_batch(recorded, d["window_ns"])}
        print(f"hops per batch: {result['hops_per_batch']:.2f} ({result['hops_in_window']:,}"
              f" hops, {result['batches_in_window']:,} batches)")  # fmt: skip
        for name, per in result["by_callee_per_batch"].items():
            print(f"  {per:7.3f}  {name}")
        callbacks, steps = (
            result["asyncio_callbacks_per_batch"],
            result["trio_task_steps_per_batch"],
        )
        print(
            f"asyncio callbacks per batch: {callbacks:.1f}; Trio task steps: {steps:.1f}, by task:"
        )
        for name, per in result["trio_steps_by_task_per_batch"].items():
            print(f"  {per:7.3f}  {name}")
        return result
    runs = []
    for i in range(1, args.runs + 1):
        say(f"{args.step} {i}/{args.runs}: drain {args.count:,}")
        if args.step == "cpu":
            d = drain(stores, args.count)
        elif args.step == "spy":
            raw = args.dir / f"py-spy-{'native' if args.native else 'python'}-{i}.raw"
            cmd = py_spy_cmd(raw, rate=args.rate, native=args.native)
            d = drain(stores, args.count, during=functools.partial(attached, cmd))
            d["raw"] = str(raw)
        elif args.step == "cpuprof":
            dump = RESULTS / "cpuprof.tmp"
            env = {
                "BENCH_CPU_PROFILE_OUT": str(dump),
                "BENCH_CPU_PROFILE_US": str(args.interval_us),
            }
            d = drain(stores, args.count, argv=INSTRUMENT, extra_env=env)
            out = args.dir / f"cpu-sampler-{i}.collapsed"
            d["samples_in_window"] = window_collapsed(dump, d["window_ns"], out)
            d["raw"] = str(out)
            dump.unlink()
        else:  # perf
            data = RESULTS / f"perf-{i}.data.tmp"
            cmd = ["perf", "record", "-e", "cpu-clock", "-F", str(args.rate), "-o", str(data)]
            d = drain(stores, args.count, during=functools.partial(attached, cmd))
            d["report"] = perf_report(data)
            data.unlink()
            print(d["report"])
        say(line(d))
        runs.append(d)
    if args.step == "cpu":
        say("worker CPU us/vote: " + ", ".join(f"{d['worker_cpu_us_per_vote']:.3f}" for d in runs))
    return runs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.profile_worker", description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)  # fmt: skip
    p.add_argument("step", choices=STEPS)
    p.add_argument("files", nargs="*", type=Path, help="collapsed stacks (summary)")
    p.add_argument("--count", type=int, default=1_000_000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--rate", type=int, default=1000, help="py-spy / perf samples per second")
    p.add_argument("--native", action="store_true", help="py-spy --native (pauses the worker)")
    p.add_argument("--interval-us", type=int, default=1000, help="cpuprof: CPU us per sample")
    p.add_argument("--cpu-us-per-vote", type=float, help="summary: shares into us per batch")
    p.add_argument("--calls", type=int, default=20_000, help="hop-cost: calls per timing")
    p.add_argument("--dir", type=Path, default=RESULTS / "profile",
                   help="where stacks and JSON go (default bench/results/profile)")  # fmt: skip
    p.add_argument("--output", type=Path, help="JSON results (default <dir>/<step>.json)")
    args = p.parse_args(argv)
    stores = Stores.from_env()
    args.dir.mkdir(parents=True, exist_ok=True)
    try:
        result = step(args, stores)
    finally:
        if args.step not in OFFLINE:
            cleanup(stores)
    if result is None:
        return 0
    name = "spy-native" if args.step == "spy" and args.native else args.step
    out = args.output or args.dir / f"{name}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    say(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
