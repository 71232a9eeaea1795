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
    cut off at once still spread out when the store comes back.
    """

    base_s: float = 0.05
    cap_s: float = 5.0
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
    the store's error metric.
    """

    name: str
    errors: type[StoreUnavailable]
    counter: Counter
    ok: bool | None = None
    last_error: str = ""
    # When a task last reported on the store (Trio's clock): the store watch asks a store
    # nobody has reported on for a while (trio_worker.watch).
    reported_at: float = -math.inf

    def failed(self, exc: StoreUnavailable) -> None:
        """Flag the store down and count the error; log when it goes down, and when the reason
        changes (a dropped table, then a refused CREATE), not at every retry."""
        if self.ok is not False or str(exc) != self.last_error:
            log.warning("%s unavailable", self.name, extra={"error": str(exc)})
        self.ok = False
        self.last_error = str(exc)
        self.reported_at = trio.current_time()
        self.counter.inc()

    def succeeded(self) -> None:
        if self.ok is False:
            log.info("%s available again", self.name)
        self.ok = True
        self.reported_at = trio.current_time()


async def retry(
    health: StoreHealth,
    operation: Callable[[], Awaitable[T]],
    *,
    step: Callable[[], object] | None = None,
) -> T:
    """Run ``operation`` until it succeeds, through any number of ``health.errors``;
    ``step()`` before each attempt (a task proving it still makes progress)."""
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
        health.succeeded()
        return result
