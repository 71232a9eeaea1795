"""The command line and the order of the stages; writes the JSON and the figure, prints the table.

Order: the one-at-a-time design; MariaDB alone at the default batch size; then ``--repeats``
drains, each between two measurements of the ceiling (a ceiling is shared by the drains either
side of it, so every drain has one just before it and one just after); a fresh worker for the
startup stage and the steady rates; the batch-size sweep; with ``--profile``, one more drain
under py-spy (not one of the repeats, whose ratios it would disturb).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.baselines import CEILING_ROWS_PER_STATEMENT, ceiling, one_at_a_time
from bench.common import PROFILES, RESULTS, ROOT, say
from bench.drain import drain
from bench.latency import STARTUP_RATE, startup_then_rates
from bench.plot import plot
from bench.profiling import RATE, attached, format_summary, py_spy_cmd, read_collapsed, summarise
from bench.report import machine, summarise_drains, table, verdicts
from bench.stores import Stores, cleanup, server_versions
from bench.sweep import sweep

# --galera's backlog: three nodes share this machine's cores with the worker, and each of the
# seven stages (four ceilings, three drains) replicates every row twice.
GALERA_COUNT = 300_000


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="just bench", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument("--count", type=int, default=None, help="backlog drained (default 1M)")
    p.add_argument("--repeats", type=int, default=3, help="drains, each between two ceilings")
    one_help = "votes for the one-at-a-time design"
    p.add_argument("--one-at-a-time-count", type=int, default=20_000, help=one_help)
    p.add_argument("--rates", default="1000,2000,5000,20000", help="offered votes/s")
    p.add_argument("--rate-seconds", type=float, default=10, help="seconds per offered rate")
    startup_help = f"seconds of {STARTUP_RATE:,.0f}/s from the first 200 on /ready"
    p.add_argument("--startup-seconds", type=float, default=10, help=startup_help)
    p.add_argument("--sweep", default="100,250,500,1000,2000,5000", help="BATCH_SIZE values")
    p.add_argument("--sweep-count", type=int, default=200_000, help="backlog per sweep point")
    p.add_argument("--sweep-rate", type=float, default=20_000, help="offered rate for sweep p99")
    p.add_argument("--sweep-seconds", type=float, default=5)
    p.add_argument("--quick", action="store_true", help="a short run (a minute or two)")
    profile_help = f"one more drain, under py-spy; raw stacks in {PROFILES.relative_to(ROOT)}/"
    p.add_argument("--profile", action="store_true", help=profile_help)
    galera_help = (
        "instead: the drain and the ceiling on a private MariaDB Galera Cluster behind HAProxy"
        f" (deploy/galera; default --count {GALERA_COUNT:,}); writes bench/results/galera.json"
    )
    p.add_argument("--galera", action="store_true", help=galera_help)
    p.add_argument(
        "--batch-size", type=int, default=None, help="with --galera: the drains' BATCH_SIZE"
    )
    p.add_argument("--output", type=Path, default=RESULTS / "latest.json")
    args = p.parse_args(argv)
    if args.count is None:
        args.count = GALERA_COUNT if args.galera else 1_000_000
    if args.quick:
        args.count, args.one_at_a_time_count = 100_000, 5_000
        args.rate_seconds, args.startup_seconds, args.sweep_seconds = 3, 5, 2
        args.sweep, args.sweep_count = "100,1000,5000", 50_000
    return args


def drains_between_ceilings(
    stores: Stores, count: int, repeats: int, batch_size: int | None = None
) -> dict[str, Any]:
    """ceiling, drain, ceiling, drain, ..., ceiling: each drain against the mean of its two."""
    say(f"ceiling: {count:,} rows as {CEILING_ROWS_PER_STATEMENT:,}-row INSERTs")
    ceilings = [ceiling(stores, count)]
    say(f"  {ceilings[-1]['votes_per_s']:,.0f} votes/s")
    drains = []
    for k in range(1, repeats + 1):
        settings = "default settings" if batch_size is None else f"BATCH_SIZE={batch_size}"
        say(f"drain {k}/{repeats}: {count:,} votes, a fresh worker with {settings}")
        d = drain(stores, count, batch_size=batch_size)
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


def profiled_drain(stores: Stores, count: int, started_at: str) -> dict[str, Any]:
    """One more drain under py-spy; its raw stacks kept in ``PROFILES`` (not in git)."""
    PROFILES.mkdir(parents=True, exist_ok=True)
    raw = PROFILES / f"drain-{started_at.replace(':', '')}.txt"
    say(f"profile: one more drain of {count:,} under py-spy ({RATE} samples/s, non-blocking)")
    d = drain(stores, count, during=lambda worker: attached(py_spy_cmd(raw), worker))
    if not raw.exists():  # py-spy failed (and said why): the rest of the run still counts
        return {"drain": d, "raw": None, "py_spy": None}
    return {"drain": d, "raw": str(raw.relative_to(ROOT)), "py_spy": summarise(read_collapsed(raw))}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.galera:
        # Loads the tests' cluster code (tests.galera) only when asked.
        from bench import galera

        return galera.run(args)
    stores = Stores.from_env()
    RESULTS.mkdir(parents=True, exist_ok=True)
    rates = [float(x) for x in args.rates.split(",") if x]
    res: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", ""),
        "machine": machine(),
        "servers": server_versions(stores),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
    }
    started = time.monotonic()
    try:
        say(f"one at a time: {args.one_at_a_time_count:,} votes, BRPOP + one INSERT each")
        res["one_at_a_time"] = one_at_a_time(stores, args.one_at_a_time_count)
        say(f"  {res['one_at_a_time']['votes_per_s']:,.0f} votes/s")
        # MariaDB's own bound for the worker's default batch size, just before the first ceiling.
        say(f"MariaDB alone at the default batch: {args.count:,} rows as 1,000-row INSERTs")
        res["ceiling_1000"] = ceiling(stores, args.count, 1000)
        say(f"  {res['ceiling_1000']['votes_per_s']:,.0f} votes/s")
        res.update(drains_between_ceilings(stores, args.count, args.repeats))
        res["drain_summary"] = summarise_drains(res["drains"])
        res["ceiling"] = {
            "votes_per_s": statistics.median(c["votes_per_s"] for c in res["ceilings"]),
            "note": "median of the ceilings of this run (the sweep's reference)",
        }
        say(f"startup: a fresh worker, {STARTUP_RATE:,.0f}/s from its first 200 on /ready; "
            f"then {args.rates}/s")  # fmt: skip
        res.update(startup_then_rates(stores, rates, args.rate_seconds, args.startup_seconds))
        sizes = [int(x) for x in args.sweep.split(",") if x]
        res["sweep"] = sweep(stores, sizes, args.sweep_count, args.sweep_rate, args.sweep_seconds)
        if args.profile:
            res["profile"] = profiled_drain(stores, args.count, res["started_at"])
    finally:
        cleanup(stores)
    res["machine"]["load_avg_after"] = list(os.getloadavg())
    res["wall_seconds"] = time.monotonic() - started
    res["targets"] = verdicts(res)
    args.output.write_text(json.dumps(res, indent=2) + "\n")
    png = args.output.with_suffix(".png")
    plot(res, png)
    print(table(res))
    if res.get("profile", {}).get("py_spy"):
        print("\nworker during one more drain, py-spy (counts waiting for a core as busy):")
        print(format_summary(res["profile"]["py_spy"]))
        print(f"raw stacks (collapsed, for a flame graph): {res['profile']['raw']}")
    print(f"\nwall time {res['wall_seconds']:.0f} s; wrote {args.output} and {png}")
    return 0
