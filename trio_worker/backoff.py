"""Capped exponential backoff with full jitter, for reconnecting to a store that went away."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import trio


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
