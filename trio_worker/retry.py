"""Retrying through store outages: capped backoff, and one store's health as the worker sees it.

Every loop that must get a store operation done (take, re-read, commit, finish, drop, heartbeat)
goes through ``retry``: on ``StoreUnavailable`` it flags the store's health (``/ready`` 503),
counts the error, logs the outage once (not once per attempt), sleeps with backoff and tries
again; the first success flags the store healthy again.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import trio
from prometheus_client import Counter

from trio_worker.errors import StoreUnavailable

T = TypeVar("T")

log = logging.getLogger("trio_worker.retry")


@dataclass
class Backoff:
    """Delays of ``base * 2**n`` seconds, at most ``cap``, each drawn uniformly from [d/2, d].

    Half-jitter rather than full jitter: a worker never retries in a tight loop, and many workers
    cut off at once still spread out when the store comes back. The cap keeps the wait after a
    store comes back short: a worker is at work again within 2.5 s of it (a Galera cluster
    regaining quorum, a restarted server).
    """

    base_s: float = 0.05
    cap_s: float = 2.5
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def next_delay(self) -> float:
        ceiling = min(self.cap_s, self.base_s * (2**self.attempt))
        self.attempt = min(self.attempt + 1, 32)
        return self.rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.attempt = 0

    async def sleep(self) -> None:
        await trio.sleep(self.next_delay())


@dataclass(eq=False)
class StoreHealth:
    """One store as the pipeline sees it: up, down, or not yet known (at start).

    ``errors`` is the exception type that means "this store can't do it now"; ``counter`` is
    the store's error metric. A store that refuses writes but answers reads (``writes_refused``)
    stays down until a write succeeds (``succeeded(wrote=True)``): reads that succeed meanwhile
    must not make it look healthy, or ``/ready`` would flap.
    """

    name: str
    errors: type[StoreUnavailable]
    counter: Counter
    answered: bool | None = None  # the last call's outcome; None before the first
    refusing_writes: bool = False
    last_error: str = ""
    last_kind: str = ""
    # When a task last reported on the store (Trio's clock): the store watch asks a store
    # nobody has reported on for a while (trio_worker.watch).
    reported_at: float = -math.inf

    @property
    def ok(self) -> bool | None:
        """Up (True), down (False), or not yet known (None)."""
        if self.answered is None:
            return None
        return self.answered and not self.refusing_writes

    def failed(self, exc: StoreUnavailable) -> None:
        """Flag the store down and count the error; log when it goes down, and when the kind of
        failure changes (a dropped table, then a refused CREATE), not at every retry."""
        if self.ok is not False or exc.kind != self.last_kind:
            log.warning("%s unavailable", self.name, extra={"error": str(exc), "kind": exc.kind})
        self.answered = False
        self.refusing_writes = self.refusing_writes or exc.writes_refused
        self.last_error = str(exc)
        self.last_kind = exc.kind
        self.reported_at = trio.current_time()
        self.counter.inc()

    def succeeded(self, *, wrote: bool = False) -> None:
        """A call succeeded; ``wrote``: one that writes, which a store refusing writes refuses."""
        was = self.ok
        self.answered = True
        if wrote:
            self.refusing_writes = False
        if was is False and self.ok:
            log.info("%s available again", self.name)
            self.last_kind = ""
        self.reported_at = trio.current_time()


async def retry(
    health: StoreHealth,
    operation: Callable[[], Awaitable[T]],
    *,
    step: Callable[[], object] | None = None,
    writes: bool = False,
) -> T:
    """Run ``operation`` until it succeeds, through any number of ``health.errors``;
    ``step()`` before each attempt (a task proving it still makes progress). ``writes``: the
    operation always writes, so its success shows the store takes writes again."""
    backoff: Backoff | None = None  # made on the first failure (its Random seeds from urandom)
    while True:
        if step is not None:
            step()
        try:
            result = await operation()
        except health.errors as exc:
            health.failed(exc)
            backoff = Backoff() if backoff is None else backoff
            await backoff.sleep()
            continue
        health.succeeded(wrote=writes)
        return result
