"""Where the worker's CPU goes during a drain: ``python bench/profile.py STEP``.

Steps (each repeatable on its own; every one drains with default settings):

- ``cpu``: N plain drains of ``--count`` votes (no profiler attached); the worker's user and
  system CPU from the first stored row to the last, divided by the votes drained in between;
- ``spy``: drains with ``py-spy record --format raw --nolineno`` attached (``--native`` to see C
  extensions, which needs py-spy to pause the worker for each sample); writes the raw stacks;
- ``summary FILE...``: top entries by self and inclusive time, and a breakdown by concern;
- ``hops``: one drain of the worker run through ``bench/instrument.py``, which records every
  ``trio_asyncio.aio_as_trio`` call: hops per batch, by callee;
- ``hop-cost``: the CPU of one hop in isolation (an empty asyncio coroutine through
  ``aio_as_trio`` under ``open_loop``), and of one redis-py ``PING`` with and without the hop.

Results go to ``bench/results/profile-*.json`` (``--output``) and are printed as tables.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import run  # noqa: E402  (bench/run.py: the stores, the drain)

# ------------------------------------------------------------------------------ one drain


def run_delay_s(pid: int) -> float:
    """Seconds the process's threads spent runnable but waiting for a core (schedstat)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return total / 1e9


class RecordingProcess(psutil.Process):
    """psutil.Process that keeps each cpu_times() reading, with the run-queue wait beside it:
    ``run.drain`` reads the worker's CPU at the first stored row and at the last, so those are
    the first and last readings."""

    def __init__(self, pid: int) -> None:
        super().__init__(pid)
        self.readings: list[tuple[Any, float, int]] = []

    def cpu_times(self) -> Any:
        t = super().cpu_times()
        self.readings.append((t, run_delay_s(self.pid), time.monotonic_ns()))
        return t


def start_worker(stores: run.Stores, argv: list[str], extra_env: dict[str, str]) -> run.Worker:
    """``run.Worker``, but with its command line and environment extended."""
    saved_popen = subprocess.Popen

    def popen(cmd: list[str], **kw: Any) -> subprocess.Popen[bytes]:
        kw["env"] = {**kw["env"], **extra_env}
        return saved_popen([sys.executable, *argv], **kw)

    run.subprocess.Popen = popen  # type: ignore[assignment,misc]
    try:
        worker = run.Worker(stores, None, run.RESULTS / "worker.log.tmp")
    finally:
        run.subprocess.Popen = saved_popen  # type: ignore[misc]
    worker.ps = RecordingProcess(worker.proc.pid)
    return worker


def one_drain(
    stores: run.Stores,
    count: int,
    *,
    argv: list[str] | None = None,
    extra_env: dict[str, str] | None = None,
    spy_cmd: list[str] | None = None,
) -> dict[str, Any]:
    """Push ``count`` votes, start a worker, drain, stop; CPU split into user and system."""
    run.reset(stores)
    run.push_backlog(stores, count, "p")
    load_before = os.getloadavg()
    worker = start_worker(stores, argv or ["-m", "trio_worker", "run"], extra_env or {})
    watcher = run.Watcher(stores)
    spy = None
    try:
        if spy_cmd is not None:
            # Attached once /ready says 200: imports and connecting are not part of the drain.
            worker.wait_ready()
            spy = subprocess.Popen(
                [*spy_cmd, "--pid", str(worker.proc.pid)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
        d = run.drain(worker, watcher, stores, count)
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            _, err = spy.communicate(timeout=60)
            if spy.returncode not in (0, -signal.SIGINT):
                run.say(f"py-spy: exit {spy.returncode}: {err.decode(errors='replace')[-400:]}")
        with_batches = watcher._one("SELECT COUNT(*) FROM vote_batches")
    finally:
        watcher.close()
        rc = worker.stop()
    readings = worker.ps.readings  # type: ignore[attr-defined]
    (first, wait0, t0), (last, wait1, t1) = readings[0], readings[-1]
    votes = round(d["votes_per_s"] * d["seconds"])  # votes stored between the two readings
    user, system = last.user - first.user, last.system - first.system
    return {
        "votes": count,
        "votes_timed": votes,
        "seconds": d["seconds"],
        "votes_per_s": d["votes_per_s"],
        "window_ns": [t0, t1],
        "batches": with_batches,
        "worker_user_s": user,
        "worker_system_s": system,
        "worker_cpu_us_per_vote": (user + system) / votes * 1e6,
        "worker_user_us_per_vote": user / votes * 1e6,
        "worker_system_us_per_vote": system / votes * 1e6,
        # Runnable but not running: what a wall-clock sampler (py-spy) counts as busy besides CPU.
        "worker_run_queue_wait_us_per_vote": (wait1 - wait0) / votes * 1e6,
        "mariadb_cpu_us_per_vote": d["mariadb_cpu_us_per_vote"],
        "cpu_cores_busy": d["cpu_cores_busy"],
        "peak_rss_mb": d["peak_rss_mb"],
        "load_avg_before": list(load_before),
        "load_avg_after": list(os.getloadavg()),
        "worker_exit_status": rc,
    }


def line(d: dict[str, Any]) -> str:
    return (
        f"  {d['votes_per_s']:>9,.0f} votes/s  worker CPU {d['worker_cpu_us_per_vote']:.3f} us/vote"
        f" (user {d['worker_user_us_per_vote']:.3f} + sys {d['worker_system_us_per_vote']:.3f};"
        f" run-queue wait {d['worker_run_queue_wait_us_per_vote']:.3f})"
        f"  cores busy {d['cpu_cores_busy']}  load {d['load_avg_before'][0]:.2f}"
        f"->{d['load_avg_after'][0]:.2f}  exit {d['worker_exit_status']}"
    )


# ------------------------------------------------------------------------------ profiles


def read_raw(paths: Iterable[Path]) -> Counter[tuple[str, ...]]:
    """py-spy raw ('collapsed') stacks, root first, summed over files."""
    stacks: Counter[tuple[str, ...]] = Counter()
    for path in paths:
        for text in path.read_text().splitlines():
            stack, _, count = text.rpartition(" ")
            if stack and count.isdigit():
                stacks[tuple(stack.split(";"))] += int(count)
    return stacks


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


# Concerns, tried in this order against the whole stack: the first whose marker appears in any
# frame takes the sample. Specific work first (metrics, parsing, SQL text, the two clients), then
# the machinery that carries it (asyncio and trio-asyncio, then Trio itself).
CONCERNS: list[tuple[str, tuple[str, ...]]] = [
    (
        "metrics (prometheus_client, vote counts)",
        ("prometheus_client", "trio_worker/metrics.py", "Batch.vote_counts"),
    ),
    (
        "parse + checks (orjson, messages, batch)",
        ("trio_worker/messages.py", "trio_worker/batch.py", "orjson"),
    ),
    ("INSERT text (values_sql, quote)", ("values_sql", "quote (", "_ledger_sql (")),
    # the batch's transaction coroutine: asyncmy (Cython, charged here) and its socket writes
    ("MySQL round trip (asyncmy, socket send)", ("asyncmy", "commit_batch.<locals>.transaction")),
    ("redis-py + hiredis (asyncio side)", ("redis/", "hiredis")),
    ("HTTP (hypercorn, quart)", ("hypercorn", "quart", "h11", "werkzeug")),
    ("logging", ("logging/",)),
    (
        "trio-asyncio hop (aio_as_trio, run_aio_*, _call_defer)",
        (
            "trio_asyncio/_adapter.py",
            "trio_asyncio/_util.py",
            "run_aio_",
            "aio (trio_worker/bridge.py)",
        ),
    ),
    (
        "asyncio loop in trio-asyncio (handles, tasks, futures, socket reads)",
        ("trio_asyncio", "asyncio/"),
    ),
    ("Trio scheduling (run loop, epoll, channels, semaphores)", ("trio/",)),
    ("worker's own code (pipeline, queue, store)", ("trio_worker/",)),
]


def concern(stack: tuple[str, ...]) -> str:
    for name, markers in CONCERNS:
        if any(m in frame for frame in stack for m in markers):
            return name
    return "other (interpreter, startup)"


def operation(stack: tuple[str, ...]) -> str:
    """The innermost worker function on the stack (asyncio-side stacks of redis-py have none)."""
    for frame in reversed(stack):
        if "trio_worker/" in frame:
            return frame
    return "(no worker frame: asyncio/Trio side)"


def summarise(stacks: Counter[tuple[str, ...]], top: int = 20) -> dict[str, Any]:
    total = sum(stacks.values())
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    by_concern: Counter[str] = Counter()
    by_op: Counter[str] = Counter()
    for stack, n in stacks.items():
        own[stack[-1]] += n
        for frame in set(stack):
            incl[frame] += n
        by_concern[concern(stack)] += n
        by_op[operation(stack)] += n

    def ranked(c: Counter[str], k: int) -> list[tuple[str, float]]:
        return [(name, n / total) for name, n in c.most_common(k)]

    return {
        "samples": total,
        "self": ranked(own, top),
        "inclusive": ranked(incl, top),
        "concerns": ranked(by_concern, len(by_concern)),
        "operations": ranked(by_op, top),
    }


def print_summary(s: dict[str, Any], cpu_us_per_batch: float | None) -> None:
    def rows(title: str, items: list[tuple[str, float]]) -> None:
        print(f"\n{title}")
        for name, share in items:
            extra = f"{share * cpu_us_per_batch:8.0f} us/batch" if cpu_us_per_batch else ""
            print(f"  {share:6.1%} {extra}  {name}")

    print(f"samples: {s['samples']:,}")
    rows("by concern (each sample counted once)", s["concerns"])
    rows("self time (leaf frame)", s["self"])
    rows("inclusive time (frame anywhere on the stack)", s["inclusive"])
    rows("innermost worker frame", s["operations"])


# ------------------------------------------------------------------------------ hops


def hops_per_batch(calls: list[tuple[int, str]], window: list[int]) -> dict[str, Any]:
    start, end = window
    inside = [name for t, name in calls if start <= t <= end]
    by_callee = Counter(inside)
    batches = by_callee.get("MySQLStore.commit_batch.<locals>.transaction", 0)
    return {
        "hops_in_window": len(inside),
        "batches_in_window": batches,
        "hops_per_batch": len(inside) / batches if batches else float("nan"),
        "by_callee_per_batch": {k: v / batches for k, v in by_callee.most_common()}
        if batches
        else {},
        "hops_whole_run": len(calls),
    }


# ------------------------------------------------------------------------------ hop cost


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


def hop_cost(stores: run.Stores, calls: int, repeats: int) -> dict[str, Any]:
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


# ------------------------------------------------------------------------------ main


def stores_from_env() -> run.Stores:
    env = os.environ
    return run.Stores(
        env.get("REDIS_HOST", "127.0.0.1"),
        int(env.get("REDIS_PORT", "6379")),
        env.get("MYSQL_HOST", "127.0.0.1"),
        int(env.get("MYSQL_PORT", "3306")),
        env.get("MYSQL_USER", "root"),
        env.get("MYSQL_PASSWORD", ""),
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("step", choices=["cpu", "spy", "cpuprof", "perf", "summary", "hops", "hop-cost"])
    p.add_argument("files", nargs="*", type=Path, help="raw py-spy files (summary)")
    p.add_argument("--count", type=int, default=1_000_000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--rate", type=int, default=1000, help="py-spy samples per second")
    p.add_argument("--native", action="store_true", help="py-spy --native (pauses the worker)")
    p.add_argument("--cpu-us-per-vote", type=float, help="to turn shares into us per batch")
    p.add_argument("--interval-us", type=int, default=1000, help="cpuprof: CPU us per sample")
    p.add_argument("--calls", type=int, default=20_000, help="hop-cost: calls per timing")
    p.add_argument("--output", type=Path, help="JSON results (default bench/results/...)")
    args = p.parse_args(argv)
    stores = stores_from_env()
    run.RESULTS.mkdir(parents=True, exist_ok=True)
    out = args.output or run.RESULTS / f"profile-{args.step}.json"
    result: Any
    try:
        if args.step == "cpu":
            result = []
            for i in range(args.runs):
                run.say(f"drain {i + 1}/{args.runs}: {args.count:,} votes, no profiler")
                result.append(one_drain(stores, args.count))
                run.say(line(result[-1]))
            figures = [r["worker_cpu_us_per_vote"] for r in result]
            run.say(f"worker CPU us/vote: {', '.join(f'{x:.3f}' for x in figures)}")
        elif args.step == "spy":
            py_spy = shutil.which("py-spy", path=Path(sys.executable).parent) or "py-spy"
            result = []
            for i in range(args.runs):
                raw = run.RESULTS / f"profile-{'native' if args.native else 'python'}-{i + 1}.raw"
                cmd = [py_spy, "record", "--rate", str(args.rate), "--format", "raw",
                       "--nolineno", "--output", str(raw)]  # fmt: skip
                cmd += ["--native"] if args.native else ["--nonblocking"]
                run.say(f"drain {i + 1}/{args.runs} under py-spy: {' '.join(cmd[1:])}")
                d = one_drain(stores, args.count, spy_cmd=cmd)
                d["raw"] = str(raw)
                run.say(line(d))
                result.append(d)
        elif args.step == "cpuprof":
            result = []
            for i in range(args.runs):
                dump = run.RESULTS / "cpuprof.tmp"
                env = {
                    "BENCH_CPU_PROFILE_OUT": str(dump),
                    "BENCH_CPU_PROFILE_US": str(args.interval_us),
                }
                run.say(
                    f"drain {i + 1}/{args.runs} under the CPU-time sampler ({args.interval_us} us)"
                )
                d = one_drain(
                    stores, args.count, argv=[str(HERE / "instrument.py"), "run"], extra_env=env
                )
                run.say(line(d))
                collapsed = run.RESULTS / f"profile-cpu-{i + 1}.collapsed"
                d["samples_in_window"] = window_collapsed(dump, d["window_ns"], collapsed)
                d["raw"] = str(collapsed)
                dump.unlink()
                result.append(d)
        elif args.step == "perf":
            result = []
            for i in range(args.runs):
                data = run.RESULTS / f"perf-{i + 1}.data.tmp"
                cmd = ["perf", "record", "-e", "cpu-clock", "-F", str(args.rate), "-o", str(data)]
                run.say(f"drain {i + 1}/{args.runs} under {' '.join(cmd)}")
                d = one_drain(stores, args.count, spy_cmd=cmd)
                run.say(line(d))
                d["report"] = perf_report(data)
                data.unlink()
                result.append(d)
                print(d["report"])
        elif args.step == "summary":
            result = summarise(read_raw(args.files))
            per_batch = args.cpu_us_per_vote * 1000 if args.cpu_us_per_vote else None
            print_summary(result, per_batch)
        elif args.step == "hops":
            dump = run.RESULTS / "hops.tmp"
            argv_hops = [str(HERE / "instrument.py"), "run"]
            d = one_drain(
                stores, args.count, argv=argv_hops, extra_env={"BENCH_HOPS_OUT": str(dump)}
            )
            run.say(line(d))
            calls = [(int(t), str(n)) for t, n in json.loads(dump.read_text())]
            dump.unlink()
            result = {"drain": d, **hops_per_batch(calls, d["window_ns"])}
            hops, batches = result["hops_in_window"], result["batches_in_window"]
            print(f"hops per batch: {hops / batches:.2f} ({hops:,} hops, {batches:,} batches)")
            for name, per in result["by_callee_per_batch"].items():
                print(f"  {per:7.3f}  {name}")
        else:
            result = hop_cost(stores, args.calls, args.runs)
            for name, r in result.items():
                print(f"  {r['best_us']:8.2f} best  {r['median_us']:8.2f} median us/call  {name}")
    finally:
        if args.step in ("cpu", "spy", "hops"):
            run.cleanup(stores)
    out.write_text(json.dumps(result, indent=2) + "\n")
    run.say(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
