"""The figure beside the JSON: throughput vs batch size, latency vs offered rate."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot(res: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    sweep = res["sweep"]
    ceiling = res["ceiling"]["votes_per_s"]
    if sweep:
        sizes = [row["batch_size"] for row in sweep]
        left.plot(sizes, [row["drain"]["votes_per_s"] for row in sweep], "o-", label="drain")
        left.axhline(ceiling, color="grey", ls="--", label="ceiling (median)")
        left.axhline(0.9 * ceiling, color="grey", ls=":", label="0.9 x ceiling")
        left.set_xscale("log")
        left.set_xlabel("BATCH_SIZE")
        left.set_ylabel("votes/s (drain)")
        twin = left.twinx()
        twin.plot(sizes, [row["latency"]["p99_ms"] for row in sweep], "s--", color="tab:red",
                  label="p99 push→commit")  # fmt: skip
        twin.set_ylabel(
            f"p99 ms at {sweep[0]['latency']['offered_per_s']:,.0f} votes/s", color="tab:red"
        )
        left.legend(loc="lower right")
        left.set_title("Throughput vs batch size")
    rates = [lat["offered_per_s"] for lat in res["latency"]]
    for key in ("p50_ms", "p90_ms", "p99_ms", "max_ms"):
        right.plot(rates, [lat[key] for lat in res["latency"]], "o-", label=key.removesuffix("_ms"))
    first = res["startup"]["first_window"]
    right.plot([res["startup"]["offered_per_s"]] * 2, [first["p99_ms"], first["max_ms"]], "x",
               color="black", label="p99, max: first 2 s after /ready")  # fmt: skip
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xlabel("offered votes/s")
    right.set_ylabel("push→commit ms")
    right.legend()
    right.set_title("Latency vs offered rate (default settings)")
    m = res["machine"]
    fig.suptitle(
        f"trio-worker bench {res['started_at'][:16]}Z · {m['cpu']} · {m['cores']} cores · "
        f"load {m['load_avg_before'][0]:.2f}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
