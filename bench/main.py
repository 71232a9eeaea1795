"""The command line and the order of the stages; writes the JSON and the figure, prints the table.

Order: the one-at-a-time design; MariaDB alone at the default batch size; then ``--repeats``
drains, each between two measurements of the ceiling (a ceiling is shared by the drains either
side of it, so every drain has one just before it and one just after); a fresh worker for the
startup stage and the steady rates; the batch-size sweep; with ``--profile``, one more drain
under py-spy (not one of the repeats, whose ratios it would disturb). ``--galera`` and
``--fast-path-pairs`` run their own stages instead (``bench.galera``, ``bench.fastpath``).
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
from bench.common import DB, PROFILES, RESULTS, ROOT, say
from bench.drain import drain, drains_between_ceilings
from bench.latency import STARTUP_RATE, startup_then_rates
from bench.plot import plot
from bench.profiling import RATE, attached, format_summary, py_spy_cmd, read_collapsed, summarise
from bench.report import machine, summarise_drains, table, verdicts
from bench.stores import Stores, cleanup, server_versions
from bench.sweep import sweep

# --galera's backlog: three nodes share this machine's cores with the worker, and each of the
# seven stages (four ceilings, three drains) replicates every row twice.
GALERA_COUNT = 300_000

DESCRIPTION = f"""\
The worker (python -m trio_worker run, default settings) draining a backlog, beside
MariaDB's own ceiling ({CEILING_ROWS_PER_STATEMENT:,}-row INSERTs prebuilt, one connection) and the
one-at-a-time design it replaces; push→commit latency at offered rates, also in
the first seconds after /ready; memory; a BATCH_SIZE sweep. Prints the table with
the targets' verdicts; writes bench/results/latest.json and latest.png. A few
minutes in all; --quick, a minute or two.

Redis and MariaDB: REDIS_HOST, REDIS_PORT, MYSQL_HOST, MYSQL_PORT, MYSQL_USER,
MYSQL_PASSWORD (default 127.0.0.1, root, no password); the bench uses a database
and a queue of its own ({DB}) and removes them at the end."""

# Values --quick changes (a minute or two), beside the full run's; the others are the same.
FULL = {"count": 1_000_000, "one_at_a_time_count": 20_000, "rate_seconds": 10.0,
        "startup_seconds": 10.0, "sweep": "100,250,500,1000,2000,5000", "sweep_count": 200_000,
        "sweep_seconds": 5.0}  # fmt: skip
QUICK = {"count": 100_000, "one_at_a_time_count": 5_000, "rate_seconds": 3.0,
         "startup_seconds": 5.0, "sweep": "100,1000,5000", "sweep_count": 50_000,
         "sweep_seconds": 2.0}  # fmt: skip


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="just bench",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )

    def default(name: str) -> str:
        full, quick = FULL[name], QUICK[name]
        shown = [f"{v:,}" if isinstance(v, int) else f"{v:g}" if isinstance(v, float) else v
                 for v in (full, quick)]  # fmt: skip
        return f" (default {shown[0]}; --quick: {shown[1]})"

    p.add_argument("--quick", action="store_true", help="a short run (a minute or two)")
    p.add_argument("--count", type=int, help="votes in each drain's backlog" + default("count"))
    p.add_argument("--repeats", type=int, default=3,
                   help="drains, each between two ceilings (default 3)")  # fmt: skip
    p.add_argument(
        "--one-at-a-time-count",
        type=int,
        help="votes for the one-at-a-time design" + default("one_at_a_time_count"),
    )
    p.add_argument("--rates", default="1000,2000,5000,20000",
                   help="offered votes/s, comma-separated (default 1000,2000,5000,20000;"
                        " the targets are judged at 2000 and 20000)")  # fmt: skip
    p.add_argument(
        "--rate-seconds", type=float, help="seconds per offered rate" + default("rate_seconds")
    )
    p.add_argument("--startup-seconds", type=float,
                   help=f"seconds of {STARTUP_RATE:,.0f}/s offered from the first 200 on /ready"
                        + default("startup_seconds"))  # fmt: skip
    p.add_argument("--sweep", help="BATCH_SIZE values, comma-separated" + default("sweep"))
    p.add_argument(
        "--sweep-count", type=int, help="backlog per sweep point" + default("sweep_count")
    )
    p.add_argument(
        "--sweep-rate",
        type=float,
        default=20_000,
        help="offered votes/s for each sweep point's p99 (default 20,000)",
    )
    p.add_argument(
        "--sweep-seconds",
        type=float,
        help="seconds of that rate per sweep point" + default("sweep_seconds"),
    )
    p.add_argument("--profile", action="store_true",
                   help="one more drain, under py-spy: a summary by concern; raw stacks in"
                        f" {PROFILES.relative_to(ROOT)}/ (not in git)")  # fmt: skip
    p.add_argument("--galera", action="store_true",
                   help="instead: the drain and the ceiling on a private MariaDB Galera Cluster"
                        f" behind HAProxy (deploy/galera; default --count {GALERA_COUNT:,});"
                        " writes bench/results/galera.json")  # fmt: skip
    p.add_argument("--batch-size", type=int, help="with --galera: the drains' BATCH_SIZE")
    p.add_argument("--fast-path-pairs", type=int, metavar="N",
                   help="instead: N interleaved pairs of drains of --count votes, one with"
                        " TRIO_ASYNCIO_FAST_PATH=true, one with false, each between two"
                        " ceilings; writes bench/results/fast-path.json")  # fmt: skip
    p.add_argument("--output", type=Path,
                   help="the JSON (default bench/results/latest.json, galera.json or"
                        " fast-path.json; the plot beside it)")  # fmt: skip
    args = p.parse_args(argv)
    if args.galera and args.fast_path_pairs:
        p.error("--galera and --fast-path-pairs are separate runs: one at a time")
    if args.fast_path_pairs is not None and args.fast_path_pairs < 1:
        p.error("--fast-path-pairs: at least 1")
    if args.galera and args.count is None:
        args.count = GALERA_COUNT
    for name, value in (QUICK if args.quick else FULL).items():
        if getattr(args, name) is None:  # not given
            setattr(args, name, value)
    return args


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
        # Loads the tests' cluster code (tests.support.galera) only when asked.
        from bench import galera

        return galera.run(args)
    if args.fast_path_pairs:
        from bench import fastpath

        return fastpath.run(args)
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
        res.update(drains_between_ceilings(stores, args.count, [{}] * args.repeats))
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
    output = args.output or RESULTS / "latest.json"
    output.write_text(json.dumps(res, indent=2) + "\n")
    png = output.with_suffix(".png")
    plot(res, png)
    print(table(res))
    if res.get("profile", {}).get("py_spy"):
        print("\nworker during one more drain, py-spy (counts waiting for a core as busy):")
        print(format_summary(res["profile"]["py_spy"]))
        print(f"raw stacks (collapsed, for a flame graph): {res['profile']['raw']}")
    print(f"\nwall time {res['wall_seconds']:.0f} s; wrote {output} and {png}")
    return 0
