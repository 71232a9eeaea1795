"""The MySQL server's clock: the one clock that judges how old a batch is, and what time it is.

Batch ids start with the batch's creation time in milliseconds of the server's clock, as this
process estimates it (``ServerClock``), and the ledger insert compares it with the server's
``NOW()``. A worker whose own clock is wrong or steps, or a restored Redis, can't make an old
batch look young, nor a fresh one old; a vote without a timestamp gets the server's time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple


def skew_s(retention_s: float) -> float:
    """How far a batch's stamp may be from the server's clock at its creation (our estimate's
    error, a clock step): the ledger stops vouching for a batch this long before its
    retention ends."""
    return min(300.0, retention_s / 10)


# Our clock that a step of the wall clock can't move: it counts a suspended VM's sleep too
# (Linux), where the monotonic clock stops.
try:
    _STEADY = time.CLOCK_BOOTTIME
except AttributeError:  # not Linux
    _STEADY = time.CLOCK_MONOTONIC

# How old the last reading of the server's clock may get before a flusher reads it again.
SYNC_S = 60.0


def steady_s() -> float:
    return time.clock_gettime(_STEADY)


@dataclass(frozen=True)
class ServerTime:
    """The server's clock at one moment: its reading, and our steady clock then."""

    server_s: float
    steady_s: float


class ServerClock:
    """The server's clock as this process estimates it: its reading at the last sync plus the
    time our steady clock has counted since. A step of this host's wall clock (NTP, a VM
    resumed) can't move it; every connect reads the server's clock, and a flusher reads it
    again once the last reading is ``SYNC_S`` old. Before the first reading: our own clock."""

    def __init__(self) -> None:
        self._server_s: float | None = None
        self._steady_s = 0.0

    def set(self, reading: ServerTime) -> None:
        self._server_s, self._steady_s = reading.server_s, reading.steady_s

    def stale(self) -> bool:
        return self._server_s is None or steady_s() - self._steady_s > SYNC_S

    def now_s(self) -> float:
        if self._server_s is None:
            return time.time()
        return self._server_s + (steady_s() - self._steady_s)

    def now_ms(self) -> int:
        return int(self.now_s() * 1000)

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.now_s(), tz=UTC)


# How far this process's estimate of the server's clock may be off (the estimate is the server's
# reading plus a steady clock since, re-read every minute): a batch whose stamp, less this, is
# past the ledger's horizon started after it.
ESTIMATE_ERROR_S = 5.0


class Bounds(NamedTuple):
    """When a batch may commit, in seconds of the server's clock (``sql.insert_ledger``)."""

    earliest: float  # not before its stamp, less the skew
    latest: float  # not after the ledger stops vouching for it, by this worker's retention
    floor: float  # it started after this, which must be past the ledger's horizon


def fresh_bounds(started_ms: int | None, retention_s: float) -> Bounds:
    """The bounds for a batch started at ``started_ms``. A batch whose id carries no time gets
    bounds that always fail: it is judged by the ledger alone."""
    if started_ms is None:
        return Bounds(0.0, 0.0, 0.0)
    started = started_ms / 1000
    skew = skew_s(retention_s)
    return Bounds(started - skew, started + retention_s - skew, started - ESTIMATE_ERROR_S)
