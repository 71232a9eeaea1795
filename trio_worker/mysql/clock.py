"""The MySQL server's clock: the one clock that judges how old a batch is.

Batch ids start with the batch's creation time in milliseconds of the server's clock, as this
process estimates it (its own clock plus the offset measured at every connect), and the ledger
insert compares it with the server's ``NOW()``. A worker whose own clock is wrong, or a
restored Redis, can't make an old batch look young.
"""

from __future__ import annotations

import time

from trio_worker.mysql.connection import Server


def skew_s(retention_s: float) -> float:
    """How far a batch's stamp may be from the server's clock at its creation (our estimate's
    error, a clock step): the ledger stops vouching for a batch this long before its
    retention ends."""
    return min(300.0, retention_s / 10)


class ServerClock:
    def __init__(self) -> None:
        self.offset_s = 0.0

    def learn(self, server: Server | None) -> None:
        if server is not None:
            self.offset_s = server.clock_offset_s

    def now_ms(self) -> int:
        return int((time.time() + self.offset_s) * 1000)


def fresh_bounds(started_ms: int | None, retention_s: float) -> tuple[float, float]:
    """The server-clock seconds between which a batch started at ``started_ms`` may commit:
    no earlier than its stamp (less the skew), no later than the ledger vouches for it. A batch
    whose id carries no time gets bounds that always fail: it is judged by the ledger alone."""
    if started_ms is None:
        return (0.0, 0.0)
    started = started_ms / 1000
    skew = skew_s(retention_s)
    return (started - skew, started + retention_s - skew)
