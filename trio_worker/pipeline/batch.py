"""A batch: the votes of one in-flight list, parsed once, ready to commit and to finish."""

from __future__ import annotations

import secrets
import time
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime

from trio_worker.messages import Row, envelope, format_utc, parse
from trio_worker.pipeline.permits import Permit


class BatchIds:
    """Batch ids that are unique across every process, ever: ``<ms>-<random>-<seq>``.

    Uniqueness matters more than it seems: the ledger says "this batch id is committed", so a
    restarted worker that reused an id would skip its new votes as already stored.
    The leading milliseconds tell when the batch was started (used for recovered batches).
    """

    def __init__(self) -> None:
        self._nonce = secrets.token_hex(6)
        self._seq = 0

    def next(self) -> str:
        self._seq += 1
        return f"{int(time.time() * 1000)}-{self._nonce}-{self._seq}"


def started_at(batch_id: str) -> datetime:
    """When a batch was started, from its id; now if the id doesn't say."""
    head = batch_id.partition("-")[0]
    try:
        return datetime.fromtimestamp(int(head) / 1000, tz=UTC)
    except (ValueError, OverflowError, OSError):
        return datetime.now(UTC)


@dataclass
class Batch:
    """Parsed votes of one in-flight list. ``rows`` go to MySQL, ``dead`` to the dead letters."""

    batch_id: str
    key: str
    size: int
    rows: list[Row]
    sources: list[bytes]  # the message each row came from, for the rare row MySQL refuses
    dead: list[bytes]
    dead_reasons: Counter[str]
    taken_at: float = field(default_factory=time.perf_counter)
    # The flusher permit it was filled under; released once it is committed.
    permit: Permit | None = None

    def vote_counts(self) -> dict[str, int]:
        return dict(Counter(vote for _, vote, _ in self.rows))


def prepare(
    batch_id: str,
    key: str,
    raws: list[bytes],
    taken: datetime,
    choices: Collection[str] | None,
    worker_id: str,
) -> Batch:
    """Parse every message of a batch; invalid ones become dead-letter envelopes."""
    default_ts = format_utc(taken.astimezone(UTC))
    rows: list[Row] = []
    sources: list[bytes] = []
    dead: list[bytes] = []
    reasons: Counter[str] = Counter()
    for raw in raws:
        result = parse(raw, default_ts, choices)
        if type(result) is tuple:
            rows.append(result)
            sources.append(raw)
        else:
            reason = str(result)
            reasons[reason] += 1
            dead.append(envelope(raw, reason, worker_id, taken))
    return Batch(batch_id, key, len(raws), rows, sources, dead, reasons)
