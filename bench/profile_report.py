"""The figures of ``bench.profile_worker``'s steps as Markdown tables, from the files they wrote.

``python -m bench.profile_worker markdown`` reads ``--dir`` (``cpu.json``, ``cpuprof.json`` and
``cpu-sampler-*.collapsed``, ``spy.json`` and ``py-spy-python-*.raw``, ``spy-native.json`` and
``py-spy-native-*.raw``, ``perf.json``, ``hops.json``, ``hop-cost.json``; stacks may be gzipped)
and prints what it finds, so a later profile is laid out exactly like an earlier one.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from bench.profiling import read_collapsed, summarise


def _load(path: Path) -> Any:
    return json.loads(path.read_text()) if path.exists() else None


def _stacks(directory: Path, pattern: str) -> list[Path]:
    return sorted(directory.glob(pattern)) + sorted(directory.glob(pattern + ".gz"))


def _f(value: float, spec: str) -> str:
    return "n/a" if value != value else format(value, spec)  # NaN: a figure that file lacks


def drains_table(runs: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| run | when | votes/s | worker CPU µs/vote | user | system | run-queue wait µs/vote "
        "| cores busy: worker / MariaDB / Redis | others | load 1 min before "
        "| reference loop µs/vote | worker ÷ reference |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    nan = float("nan")
    for k, d in enumerate(runs, 1):
        busy = d["cpu_cores_busy"]
        # (the first before-profile's files name two fields differently, or lack them)
        load = d.get("load_avg_1m_before", d.get("load_avg_before", [nan])[0])
        lines.append(
            f"| {k} | {d.get('when', '')} | {d['votes_per_s']:,.0f} "
            f"| **{d['worker_cpu_us_per_vote']:.3f}** "
            f"| {d['worker_user_us_per_vote']:.3f} | {d['worker_system_us_per_vote']:.3f} "
            f"| {_f(d.get('worker_run_queue_wait_us_per_vote', nan), '.3f')} "
            f"| {busy.get('worker', 0):.2f} / {busy.get('mariadb', 0):.2f} / "
            f"{busy.get('redis', 0):.2f} | {_f(d.get('others_cores_busy', nan), '.2f')} "
            f"| {_f(load, '.2f')} | {_f(d.get('reference_us_per_vote', nan), '.3f')} "
            f"| {_f(d.get('worker_cpu_vs_reference', nan), '.2f')} |"
        )
    return lines


def us_per_batch(runs: list[dict[str, Any]]) -> float:
    """Median worker CPU per batch of the plain drains (votes per batch from the ledger)."""
    return float(
        statistics.median(
            d["worker_cpu_us_per_vote"] * d["votes"] / d.get("batches", d["votes"] / 1000)
            for d in runs
        )
    )


def profile_tables(paths: list[Path], per_batch: float | None, top: int = 20) -> list[str]:
    s = summarise(read_collapsed(paths), top)
    cost = "| µs per batch " if per_batch else ""
    sep = "|---" if per_batch else ""

    def table(title: str, rows: list[tuple[str, float]]) -> list[str]:
        out = [f"**{title}**", "", f"| share {cost}| |", f"|---{sep}|---|"]
        for name, share in rows:
            us = f"| {share * per_batch:,.0f} " if per_batch else ""
            out.append(f"| {share:.1%} {us}| `{name}` |")
        return [*out, ""]

    inclusive = (
        f"Top {top} by inclusive time (frame anywhere on the stack below trio.run; frames on"
        " 97%+ of stacks left out)"
    )
    return [
        f"{s['samples']:,} samples from {len(paths)} drains.",
        "",
        *table("By concern (each sample counted once, first matching rule)", s["concerns"]),
        *table(f"Top {top} by self time (leaf frame)", s["self"]),
        *table(inclusive, s["inclusive"]),
        *table("Innermost worker frame", s["innermost_worker_frame"][:12]),
    ]


def markdown(directory: Path) -> str:
    out: list[str] = []
    cpu = _load(directory / "cpu.json")
    per_batch = us_per_batch(cpu) if cpu else None
    if cpu:
        out += ["### Worker CPU per vote, plain drains", "", *drains_table(cpu), ""]
        out.append(f"Median worker CPU per batch: {per_batch:,.0f} µs.")
        out.append("")
    for name, json_name, pattern in (
        ("CPU-time sampler (SIGPROF)", "cpuprof.json", "cpu-sampler-*.collapsed"),
        ("py-spy, Python frames (--nonblocking)", "spy.json", "py-spy-python-*.raw"),
        ("py-spy --native", "spy-native.json", "py-spy-native-*.raw"),
    ):
        paths = _stacks(directory, pattern)
        if not paths:
            continue
        out += [f"### {name}", ""]
        runs = _load(directory / json_name)
        if runs:
            out += ["The drains it ran on:", "", *drains_table(runs), ""]
        out += profile_tables(paths, per_batch)
    perf = _load(directory / "perf.json")
    if perf:
        out += ["### perf, self CPU by shared object and symbol (first drain)", "", "```",
                perf[0]["report"], "```", ""]  # fmt: skip
    hops = _load(directory / "hops.json")
    if hops:
        out += [
            "### Trio→asyncio hops per batch",
            "",
            f"{hops['hops_in_window']:,} hops over {hops['batches_in_window']:,} batches between "
            f"the first stored row and the last: **{hops['hops_per_batch']:.2f} per batch**.",
            "",
            f"The event loops' work per batch in the same window: "
            f"{hops.get('asyncio_callbacks_per_batch', float('nan')):.1f} asyncio callbacks run"
            f" on trio-asyncio's loop, {hops.get('trio_task_steps_per_batch', float('nan')):.1f}"
            " Trio task steps.",
            "",
            "| per batch | callee |",
            "|---|---|",
            *[f"| {v:.3f} | `{k}` |" for k, v in hops["by_callee_per_batch"].items()],
            "",
        ]
    cost = _load(directory / "hop-cost.json")
    if cost:
        out += ["### Cost of one call, in isolation (CPU µs per call)", "",
                "| best | median | call |", "|---|---|---|"]  # fmt: skip
        out += [f"| {r['best_us']:.2f} | {r['median_us']:.2f} | {k} |" for k, r in cost.items()]
        out.append("")
    return "\n".join(out)
