"""``just bench --fast-path-pairs N``: the worker with trio-asyncio's fast path on, and off.

What ``TRIO_ASYNCIO_FAST_PATH`` (trio_worker/loop.py) buys, measured as the main drains are:
``N`` pairs of drains of the same backlog (``--count``, default 1,000,000), one drain with
``TRIO_ASYNCIO_FAST_PATH=true`` and one with ``false``, each between two ceilings (MariaDB alone,
``bench.drain.drains_between_ceilings``). The pairs alternate which setting goes first
(on/off, off/on, ...), so a machine that speeds up or slows down over the run weighs on both
alike. Per drain: the worker's CPU per vote and drain ÷ ceiling; per setting, their medians.

Each drain also says whether the fast path was in effect: a worker logs one warning when it
runs the stock loop, whether told to (``false``) or because the installed trio-asyncio is not
one the fast path was verified on; an "on" drain that ran the stock loop is flagged, since it
measures nothing. Writes bench/results/fast-path.json (``--output`` to change), nothing else.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import RESULTS
from bench.drain import drains_between_ceilings
from bench.report import drains_workers_line, load_avg, machine
from bench.stores import Stores, cleanup, server_versions

VARIABLE = "TRIO_ASYNCIO_FAST_PATH"
SETTINGS = {"on": "true", "off": "false"}
OUTPUT = RESULTS / "fast-path.json"
STOCK_LOOP = "fast path off"  # trio_worker.loop.open_loop's warning when the stock loop runs


def order(pairs: int) -> list[str]:
    """on, off, off, on, on, off, ...: each pair's first drain alternates."""
    out: list[str] = []
    for k in range(pairs):
        out += ["on", "off"] if k % 2 == 0 else ["off", "on"]
    return out


def summarise(drains: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians (and ranges) per setting; off ÷ on of the medians."""
    per: dict[str, Any] = {}
    for setting in SETTINGS:
        mine = [d for d in drains if d["fast_path"] == setting]
        cpu = [d["worker_cpu_us_per_vote"] for d in mine]
        ratio = [d["vs_ceiling"] for d in mine]
        per[setting] = {
            "drains": len(mine),
            "worker_cpu_us_per_vote": {"median": statistics.median(cpu), "min": min(cpu),
                                       "max": max(cpu)},
            "vs_ceiling": {"median": statistics.median(ratio), "min": min(ratio),
                           "max": max(ratio)},
        }  # fmt: skip
    on, off = per["on"], per["off"]
    per["off_vs_on"] = {
        "worker_cpu_us_per_vote": off["worker_cpu_us_per_vote"]["median"]
        / on["worker_cpu_us_per_vote"]["median"],
        "vs_ceiling": off["vs_ceiling"]["median"] / on["vs_ceiling"]["median"],
    }
    return per


def plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def table(res: dict[str, Any]) -> str:
    m, drains, summary = res["machine"], res["drains"], res["summary"]
    lines = [
        f"machine: {m['cpu']}, {m['cores']} cores; load avg {load_avg(m['load_avg_before'])} "
        f"before, {load_avg(m['load_avg_after'])} after",
        "",
        f"{VARIABLE}: {plural(res['settings']['pairs'], 'interleaved pair')} of drains of "
        f"{res['settings']['count']:,} votes, each between two ceilings",
        "(ceiling: MariaDB alone, 5,000-row INSERTs, one connection; worker: CPU per vote from the",
        "first commit to the last; others: cores busy with every other process meanwhile):",
        f"{'run':>4}{'fast':>6}{'ceiling':>10}{'drain':>10}{'ceiling':>10}{'drain /':>9}"
        f"{'worker':>9}{'others':>8}",
        f"{'':>4}{'path':>6}{'before':>10}{'votes/s':>10}{'after':>10}{'ceiling':>9}"
        f"{'us/vote':>9}{'cores':>8}",
    ]
    for k, d in enumerate(drains, 1):
        on = d["fast_path_in_effect"]
        flag = ""
        if on != (d["fast_path"] == "on"):
            flag = "  (!) fast path in effect" if on else "  (!) stock loop ran"
        lines.append(
            f"{k:>4}{d['fast_path']:>6}{d['ceiling_before']:>10,.0f}{d['votes_per_s']:>10,.0f}"
            f"{d['ceiling_after']:>10,.0f}{d['vs_ceiling']:>9.2f}"
            f"{d['worker_cpu_us_per_vote']:>9.2f}{d['others_cores_busy']:>8.2f}{flag}"
        )
    lines += ["", f"{'median':>10}{'drain / ceiling':>17}{'worker us/vote':>16}"]
    for setting in SETTINGS:
        s = summary[setting]
        lines.append(
            f"{setting:>10}{s['vs_ceiling']['median']:>17.2f}"
            f"{s['worker_cpu_us_per_vote']['median']:>16.2f}   ({plural(s['drains'], 'drain')})"
        )
    r = summary["off_vs_on"]
    lines.append(f"{'off / on':>10}{r['vs_ceiling']:>17.2f}{r['worker_cpu_us_per_vote']:>16.2f}")
    stock = [k for k, d in enumerate(drains, 1) if d["fast_path"] == "on"
             and not d["fast_path_in_effect"]]  # fmt: skip
    if stock:
        why = next(w for w in drains[stock[0] - 1]["worker_warnings"] if STOCK_LOOP in w)
        lines += ["", f"(!) drains {stock} ran the stock loop although asked for the fast path:",
                  f"    {why}"]  # fmt: skip
    lines += ["", drains_workers_line(drains)]
    return "\n".join(lines)


def run(args: Any) -> int:
    """The stage alone (the main run's stages are not run); writes its own JSON."""
    stores = Stores.from_env()
    RESULTS.mkdir(parents=True, exist_ok=True)
    output: Path = args.output or OUTPUT
    settings = order(args.fast_path_pairs)
    started = time.monotonic()
    res: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", ""),
        "machine": machine(),
        "servers": server_versions(stores),
        "settings": {"count": args.count, "pairs": args.fast_path_pairs, "order": settings},
    }
    runs = [{VARIABLE: SETTINGS[s]} for s in settings]
    try:
        res.update(drains_between_ceilings(stores, args.count, runs, labels=[
            f"{VARIABLE}={SETTINGS[s]}" for s in settings]))  # fmt: skip
    finally:
        cleanup(stores)
    for setting, d in zip(settings, res["drains"], strict=True):
        d["fast_path"] = setting
        d["fast_path_in_effect"] = not any(STOCK_LOOP in w for w in d["worker_warnings"])
    res["summary"] = summarise(res["drains"])
    res["machine"]["load_avg_after"] = list(os.getloadavg())
    res["wall_seconds"] = time.monotonic() - started
    output.write_text(json.dumps(res, indent=2) + "\n")
    print(table(res))
    print(f"\nwall time {res['wall_seconds']:.0f} s; wrote {output}")
    return 0
