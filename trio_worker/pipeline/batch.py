"""A batch: the votes of one in-flight list, parsed once, ready to commit and to finish."""

from __future__ import annotations

import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import itemgetter

from trio_worker.config import Config
from trio_worker.messages import (
    TOO_LARGE,
    Row,
    envelope,
    format_utc,
    parse_all,
    too_large_envelope,
)
from trio_worker.pipeline.permits import Permit
from trio_worker.queue import Item, Keys, TooLarge


class BatchIds:
    """Batch ids that are unique across every process, ever: ``<ms>-<random>-<seq>``.

    Uniqueness matters more than it seems: the ledger says "this batch id is committed", so a
    restarted worker that reused an id would skip its new votes as already stored.
    The leading milliseconds tell when the batch was started, on the MySQL server's clock
    (``clock``): the ledger judges by it whether it can still vouch for the batch.
    """

    def __init__(self, now_ms: Callable[[], int]) -> None:
        self._now_ms = now_ms
        self._nonce = secrets.token_hex(6)
        self._seq = 0

    def next(self) -> str:
        self._seq += 1
        return f"{self._now_ms()}-{self._nonce}-{self._seq}"


def started_ms(batch_id: str) -> int | None:
    """When a batch was started (server clock, ms), from its id; None if the id doesn't say."""
    head = batch_id.partition("-")[0]
    return int(head) if head.isdigit() and len(head) < 16 else None


def started_at(batch_id: str) -> datetime:
    """When a batch was started, from its id; now if the id doesn't say."""
    ms = started_ms(batch_id)
    return datetime.now(UTC) if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC)


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
    # Oversized messages: their position in the in-flight list, and the list that keeps them.
    originals: list[tuple[int, str]] = field(default_factory=list)
    taken_at: float = field(default_factory=time.perf_counter)
    # The flusher permit it was filled under; released once it is committed.
    permit: Permit | None = None

    def vote_counts(self) -> Counter[str]:
        """Rows by vote (for ``votes_processed_total``)."""
        return Counter(map(itemgetter(1), self.rows))


def prepare(
    batch_id: str,
    key: str,
    items: list[Item],
    taken: datetime,
    config: Config,
    keys: Keys,
) -> Batch:
    """Parse every message of a batch; invalid ones become dead-letter envelopes."""
    worker_id = config.worker_id
    parsed = parse_all(items, format_utc(taken.astimezone(UTC)), config.vote_choices)
    dead: list[bytes] = []
    reasons: Counter[str] = Counter()
    for position, reason in parsed.invalid:
        raw = items[position]
        assert type(raw) is bytes
        reasons[reason] += 1
        dead.append(envelope(raw, reason, worker_id, taken))
    originals: list[tuple[int, str]] = []
    for position in parsed.other:
        large = items[position]
        assert isinstance(large, TooLarge)
        original_key = keys.large(batch_id, position)
        originals.append((position, original_key))
        reasons[TOO_LARGE] += 1
        dead.append(too_large_envelope(large.preview, large.size, original_key, worker_id, taken))
    return Batch(batch_id, key, len(items), parsed.rows, parsed.sources, dead, reasons, originals)
