"""Names, paths and small helpers every stage uses."""

from __future__ import annotations

import os
import socket
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
# Raw profiler output (``--profile``): large and machine-bound, so not in git (.gitignore).
PROFILES = RESULTS / "profiles"

# The bench's own database and queue: never the worker's defaults (voting / votes).
DB = "trio_worker_bench"
QUEUE = "trio_worker_bench"


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def progress(text: str) -> None:
    if sys.stderr.isatty():
        print(f"\r\033[K{text}", end="", file=sys.stderr, flush=True)


def done_progress() -> None:
    if sys.stderr.isatty():
        print("\r\033[K", end="", file=sys.stderr, flush=True)


# A backlog's votes were cast at this rate: ten of them share each millisecond of timestamp.
CAST_PER_S = int(os.environ.get("BENCH_CAST_PER_S", "10000"))


def stamp(seconds: float) -> str:
    """A moment as front ends write it (JavaScript's ``toISOString``): UTC, milliseconds, Z."""
    moment = datetime.fromtimestamp(seconds, UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


def vote(voter_id: str, i: int, cast_at: float | None = None) -> bytes:
    """One vote as producers send it, cast at ``cast_at`` (Unix seconds; now by default)."""
    when = time.time() if cast_at is None else cast_at
    return orjson.dumps({"voter_id": voter_id, "vote": "ab"[i & 1], "timestamp": stamp(when)})


def pct(values: list[float], p: float) -> float:
    """The nearest-rank percentile; NaN for no values."""
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s)) - 1))]


def machine_busy_s() -> float:
    """CPU seconds all cores spent busy since boot (/proc/stat: everything but idle and iowait)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    idle, iowait = fields[3], fields[4]
    return (sum(fields) - idle - iowait) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
