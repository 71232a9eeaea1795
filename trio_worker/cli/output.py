"""What the operator commands print: reports, tables, the progress bar."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any

import orjson


def confirm(question: str) -> bool:
    try:
        return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")
    except EOFError:
        return False


def report(ok: bool, text: str) -> None:
    if ok:
        print(f"ok: {text}")
    else:
        print(f"error: {text}", file=sys.stderr)


def print_stats(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
        return
    print(f"queue           {result['queue']}")
    print(f"queue depth     {result['queue_depth']}")
    held = ", ".join(result["workers_with_in_flight"]) or "no worker"
    print(f"in flight       {result['in_flight']} (held by {held})")
    if result["workers_with_in_flight_dead"]:
        dead = ", ".join(result["workers_with_in_flight_dead"])
        print(f"                stopped workers, awaiting takeover: {dead}")
    print(f"dead letters    {result['dead_letters']} in {result['dead_letter_queue']}")
    if not result["database_exists"]:
        print(f"stored total    0 (database {result['database']!r} has no votes table yet)")
        return
    print(f"stored total    {result['stored_total']} in {result['database']}.votes")
    for vote, n in result["stored_by_vote"].items():
        print(f"  {vote:<13} {n}")


@dataclass
class Progress:
    """A one-line progress bar on a terminal (stderr); silent elsewhere."""

    total: int
    label: str
    # Looked up when the bar is made: sys.stderr may have been replaced since import.
    enabled: bool = field(default_factory=lambda: sys.stderr.isatty())
    done: int = 0
    started_at: float = field(default_factory=time.monotonic)

    def advance(self, n: int) -> None:
        self.done += n
        if not self.enabled:
            return
        width = 30
        filled = width * self.done // max(self.total, 1)
        pct = 100 * self.done // max(self.total, 1)
        elapsed = max(time.monotonic() - self.started_at, 1e-6)
        bar = "#" * filled + "-" * (width - filled)
        sys.stderr.write(
            f"\r{self.label} [{bar}] {self.done}/{self.total} {pct}% {self.done / elapsed:,.0f}/s"
        )
        if self.done >= self.total:
            sys.stderr.write("\n")
        sys.stderr.flush()
