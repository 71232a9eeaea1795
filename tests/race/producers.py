"""Producers: three tasks LPUSHing unique messages, and the record of what they pushed.

A push whose reply is lost (Redis killed under it) may or may not have landed; LPUSH is atomic,
so the whole push did or none of it: the checker requires exactly that of each such push, and
bounds how many there may be (producers hold their pushes while Redis is restarted).
"""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import redis
import trio

from tests.race import payloads
from tests.race.clients import Clients
from tests.race.kinds import left_out
from tests.race.payloads import Vote
from tests.race.report import Report

PRODUCERS = 3


# How often the producers fall quiet together, and for how long.
QUIET_EVERY_S = 8.0
QUIET_S = 1.5


@dataclass
class Push:
    """One LPUSH: what it held, by kind."""

    voters: list[str] = field(default_factory=list)
    malformed: list[bytes] = field(default_factory=list)
    oversized: list[bytes] = field(default_factory=list)  # digests
    messages: list[bytes] = field(default_factory=list)


class Producers:
    def __init__(self, seed: int, queue: str, clients: Clients, report: Report) -> None:
        self.seed = seed
        self.queue = queue
        self.clients = clients
        self.report = report
        self.votes: dict[str, Vote] = {}
        self.malformed: dict[bytes, str] = {}  # message → the reason it must be dead-lettered with
        self.oversized: dict[bytes, int] = {}  # digest → size
        self.failed: list[Push] = []
        self.producing = True
        self._open = trio.Event()
        self._open.set()
        self._pushing = 0
        without = left_out()
        self.with_oversized = "oversized_message" not in without
        self.with_bursts = "oversized_packet" not in without

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            for n in range(PRODUCERS):
                nursery.start_soon(self.produce, n)

    @asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        """No push is under way inside this block (a Redis restart can't lose a reply)."""
        self._open = trio.Event()
        try:
            with trio.fail_after(30):
                while self._pushing:  # noqa: ASYNC110 (a counter)
                    await trio.sleep(0.01)
            yield
        finally:
            self._open.set()

    async def produce(self, n: int) -> None:
        client = self.clients.redis(f"producer{n}")
        rng = random.Random(f"{self.seed}-producer{n}")
        start = trio.current_time()
        # Each producer's first oversized message is of its own variant, early: a short run has
        # each; producer 0 pushes a burst of long ids early, for the same reason.
        next_oversized = start + rng.uniform(0.3, 2.0)
        first_variant = ("big", "just_over", "garbage")[n % 3]
        next_burst = start + (rng.uniform(0.5, 3.0) if n == 0 else rng.uniform(3.0, 12.0))
        i = 0
        try:
            while self.producing:
                push = Push()
                now = trio.current_time()
                if self.with_oversized and now >= next_oversized:
                    i += 1
                    variant = first_variant or rng.choice(["big"] + ["just_over", "garbage"] * 3)
                    first_variant = ""
                    self.add_oversized(
                        push, payloads.oversized(rng, f"{self.seed}-{n}-{i}", variant)
                    )
                    next_oversized = now + rng.uniform(1.5, 4.5)
                elif self.with_bursts and now >= next_burst:
                    for _ in range(rng.randint(130, 260)):
                        i += 1
                        self.add_vote(
                            push, *payloads.long_id(rng, f"{self.seed}-{n}-{i}", time.time())
                        )
                    next_burst = now + rng.uniform(8.0, 20.0)
                else:
                    i = self.fill(push, rng, n, i)
                await self.push(client, n, push)
                await trio.sleep(rng.uniform(0.02, 0.12))
                # Every producer falls quiet for a moment every few seconds, together: the queue
                # empties and the workers wait on it (BLMOVE), which faults must catch too.
                phase = (trio.current_time() - start) % QUIET_EVERY_S
                if phase > QUIET_EVERY_S - QUIET_S:
                    await trio.sleep(QUIET_EVERY_S - phase)
        finally:
            client.close()

    def fill(self, push: Push, rng: random.Random, n: int, i: int) -> int:
        """An ordinary push: 1-40 messages, about 2 % malformed, a few exactly at the limit."""
        for _ in range(rng.randint(1, 40)):
            i += 1
            tag = f"{self.seed}-{n}-{i}"
            if rng.random() < 0.02:
                message, reason = payloads.malformed(rng, tag)
                self.malformed[message] = reason
                push.malformed.append(message)
                push.messages.append(message)
                continue
            size = 4096 if self.with_oversized and rng.random() < 0.003 else None
            self.add_vote(push, *payloads.valid(rng, f"s{tag}", time.time(), size))
        return i

    def add_vote(self, push: Push, message: bytes, vote: Vote) -> None:
        self.votes[vote.voter] = vote
        push.voters.append(vote.voter)
        push.messages.append(message)

    def add_oversized(self, push: Push, message: bytes) -> None:
        key = payloads.digest(message)
        self.oversized[key] = len(message)
        push.oversized.append(key)
        push.messages.append(message)

    async def push(self, client: redis.Redis, n: int, push: Push) -> None:
        # No checkpoint between seeing the pushes open and counting this one: ``held`` must
        # never see zero pushes while one is about to start.
        while not self._open.is_set():
            await self._open.wait()
        self._pushing += 1
        try:
            await trio.to_thread.run_sync(client.lpush, self.queue, *push.messages)
        except redis.RedisError as exc:
            # Did it land? Can't tell: all of it did, or none (LPUSH is atomic).
            self.failed.append(push)
            self.report.note(f"producer{n}: push failed ({exc}); {len(push.messages)} uncertain")
        else:
            if push.oversized:
                self.report.faults["oversized_message"] += len(push.oversized)
            if len(push.voters) >= 130 and push.voters[0].startswith("L"):
                self.report.faults["oversized_packet"] += 1
        finally:
            self._pushing -= 1
        push.messages = []  # the checker needs what the push held, not the bytes
