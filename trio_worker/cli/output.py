"""What the operator commands print: reports, tables, the progress bar."""

from __future__ import annotations

import base64
import binascii
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from trio_worker.messages import STALE_BATCH
from trio_worker.ops.dlq import Listing, purged_by
from trio_worker.version import version

if TYPE_CHECKING:
    from trio_worker.config import Config
    from trio_worker.ops.check import Finding

# How much of a message a line of `dlq list` shows.
PREVIEW_CHARS = 60


def confirm(question: str) -> bool:
    try:
        return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")
    except EOFError:
        return False


def report(finding: Finding) -> None:
    if finding.ok:
        print(f"ok: {finding.text}")
    else:
        print(f"error: {finding.text}", file=sys.stderr)


def print_check_json(config: Config, findings: list[Finding], ok: bool) -> None:
    """``check --json``: one object, each store's finding as facts beside its line."""
    doc: dict[str, Any] = {
        "ok": ok,
        "version": version(),
        "configuration": {
            "ok": True,
            "queue": config.vote_queue,
            "dead_letter_queue": config.dead_letter_queue,
            "worker_id": config.worker_id,
        },
    }
    for finding in findings:
        doc[finding.store] = {"ok": finding.ok, "message": finding.text, **finding.facts}
    print(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())


def print_letters(listing: Listing, queue: str, reason: str | None) -> None:
    """``dlq list``: one line a letter, oldest first, for a person (``--json`` for scripts)."""
    of = f" of reason {reason}" if reason else ""
    if not listing.letters:
        print(f"no dead letters{of} in {queue} ({listing.total} in all)")
        return
    print(f"{'time':<32}  {'reason':<20}  {'worker':<24}  message")
    for doc in listing.letters:
        print(
            f"{doc.get('time', '?')!s:<32}  {doc.get('reason', '?')!s:<20}"
            f"  {doc.get('worker_id', '?')!s:<24}  {_preview(doc)}"
        )
    print(
        f"{len(listing.letters)} shown{of}, oldest first, of {listing.total} in {queue}"
        " (--all for every one, --json for the whole envelopes)"
    )


def _preview(doc: dict[str, Any]) -> str:
    if "unreadable_envelope" in doc:
        return f"(not an envelope) {_cut(str(doc['unreadable_envelope']))}"
    message = str(doc.get("message", ""))
    notes = []
    if doc.get("encoding") == "base64":
        try:
            size = len(base64.b64decode(message))
        except (binascii.Error, ValueError):
            size = 0
        notes.append(f"base64 of {size} bytes")
    if doc.get("truncated"):
        notes.append(f"first bytes of {doc.get('size', '?')}")
    if doc.get("may_be_stored"):
        notes.append("may be stored already")
    text = _cut(orjson.dumps(message).decode())
    return f"({', '.join(notes)}) {text}" if notes else text


def _cut(text: str) -> str:
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 3] + "..."


def print_purge_plan(counts: Counter[str], reason: str | None, queue: str) -> None:
    """What ``dlq purge`` would delete and keep, by reason, before it asks."""
    if not counts:
        print(f"no dead letters in {queue}")
        return
    print(f"dead letters in {queue}, by reason:")
    for letter_reason, n in sorted(counts.items()):
        if purged_by(letter_reason, reason):
            fate = "delete"
        elif letter_reason == STALE_BATCH:
            fate = (
                "keep: they may hold the only copy of a valid vote (check MySQL first;"
                f" --reason {STALE_BATCH} deletes them)"
            )
        else:
            fate = "keep"
        print(f"  {letter_reason:<22} {n:>8}  {fate}")


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
