"""What the race injects, how often each kind must really happen, and the order it is drawn in.

A kind that never fires (a pattern that no longer matches, a moment that never comes) would let a
broken worker pass, so every kind has a minimum count, summed over the seeds of a run
(``tests/race/test_race.py``'s last test). Minimums follow the length of each seed's run:

- ``cheap`` kinds (one worker or one connection, a few seconds): 1 in a run shorter than 45 s
  (the 12 s smoke of ``just test``), else 2 per minute of run;
- ``costly`` kinds (hold one or two worker processes for 5-15 s, or need a moment they can't
  steer, like a claim by the chosen rescuer; mixed_retention restarts a worker twice, 15-30 s
  apart): none in a short run, 1 per minute otherwise;
- ``long`` kinds (pause_beyond_retention: 40 s of a 60 s run) run only in runs of 45 s or
  more, once each;
- ``input`` kinds are what producers push: oversized messages (4 per short run, 10 per minute)
  and bursts of long voter ids that overflow a packet (1 per short run, 3 per minute);
- in runs of 45 s or more, each request pattern a proxy matches is caught at least once.

``RACE_WITHOUT=kind,kind`` leaves kinds out of a run (and out of the minimums): e.g. to run the
rest of the suite against a build that lacks a feature one kind needs.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from dataclasses import dataclass
from typing import Literal

from tests.race.settings import MYSQL_PATTERNS, REDIS_PATTERNS

Cost = Literal["cheap", "costly", "long", "input"]
LONG_RUN_S = 45.0


@dataclass(frozen=True)
class Kind:
    name: str
    cost: Cost


KINDS = (
    Kind("sigkill", "cheap"),
    Kind("sigkill_before_move", "cheap"),
    Kind("sigkill_mid_batch", "cheap"),
    Kind("sigkill_after_commit", "cheap"),
    Kind("sigkill_during_recovery", "costly"),
    Kind("sigterm_drain", "cheap"),
    Kind("sigterm_twice", "cheap"),
    Kind("pause_takeover", "costly"),
    Kind("pause_beyond_retention", "long"),
    Kind("twin_worker_id", "costly"),
    Kind("proxy_cut", "cheap"),
    Kind("proxy_blackhole", "cheap"),
    Kind("proxy_latency", "cheap"),
    Kind("proxy_cut_reply", "cheap"),
    Kind("proxy_cut_before", "cheap"),
    Kind("proxy_half_reply", "cheap"),
    Kind("frozen_mysql", "cheap"),
    Kind("mysql_kill", "cheap"),
    Kind("redis_client_kill", "cheap"),
    Kind("restart_redis", "cheap"),
    Kind("restart_mariadb", "cheap"),
    Kind("clock_step", "cheap"),
    Kind("heartbeat_deleted", "cheap"),
    Kind("health_burst", "cheap"),
    Kind("mixed_retention", "costly"),
    Kind("oversized_message", "input"),
    Kind("oversized_packet", "input"),
)
NAMES = tuple(k.name for k in KINDS)
INPUT_MINIMUM = {"oversized_message": (4, 10), "oversized_packet": (1, 3)}


def left_out() -> frozenset[str]:
    """The kinds ``RACE_WITHOUT`` names (a name that is no kind is a mistake worth stopping)."""
    names = frozenset(n.strip() for n in os.environ.get("RACE_WITHOUT", "").split(",") if n.strip())
    unknown = names - set(NAMES)
    if unknown:
        raise ValueError(f"RACE_WITHOUT: no such kind {sorted(unknown)}; kinds: {NAMES}")
    return names


def enabled(duration_s: float) -> tuple[Kind, ...]:
    """The kinds a run of ``duration_s`` injects."""
    out = left_out()
    return tuple(
        k for k in KINDS if k.name not in out and (k.cost != "long" or duration_s >= LONG_RUN_S)
    )


def minimum(kind: Kind, duration_s: float) -> int:
    """How many times ``kind`` must happen in one run of ``duration_s``."""
    short = duration_s < LONG_RUN_S
    minutes = duration_s / 60
    if kind.cost == "input":
        few, per_minute = INPUT_MINIMUM[kind.name]
        return few if short else max(few, int(per_minute * minutes))
    if kind.cost == "long":
        return 0 if short else 1
    if kind.cost == "costly":
        return 0 if short else max(1, int(minutes))
    return 1 if short else max(2, int(2 * minutes))


def quotas(duration_s: float) -> dict[str, int]:
    return {k.name: minimum(k, duration_s) for k in enabled(duration_s)}


def pattern_quotas(duration_s: float) -> dict[str, int]:
    """In a run of 45 s or more, each request pattern must have been caught at least once: a
    kind that meets its minimum on some patterns could hide one that no longer matches (a
    script whose hash changed). The proxy_* kinds take the least-caught pattern first."""
    names = {k.name for k in enabled(duration_s)}
    at_request = {"proxy_cut_reply", "proxy_cut_before", "proxy_half_reply"}
    if duration_s < LONG_RUN_S or not names & at_request:
        return {}
    return {p.name: 1 for p in (*REDIS_PATTERNS, *MYSQL_PATTERNS)}


class Schedule:
    """Draws the next fault kind: first the kinds below their minimum (a skipped attempt is
    drawn again), in an order from the seed, then any short kind at random."""

    def __init__(self, duration_s: float, rng: random.Random) -> None:
        kinds = [k for k in enabled(duration_s) if k.cost in ("cheap", "costly")]
        self.kinds = kinds
        self.quota = {k.name: minimum(k, duration_s) for k in kinds}
        self.injected: Counter[str] = Counter()
        self.running: Counter[str] = Counter()
        self.rng = rng

    def behind(self) -> list[str]:
        """The kinds below their minimum, counting those under way as done."""
        return [
            k.name
            for k in self.kinds
            if self.injected[k.name] + self.running[k.name] < self.quota[k.name]
        ]

    def short(self) -> bool:
        """Whether some kind has not yet been injected as often as its minimum."""
        return any(self.injected[k.name] < self.quota[k.name] for k in self.kinds)

    def next(self) -> str:
        behind = self.behind()
        name = self.rng.choice(behind) if behind else self.rng.choice(self.kinds).name
        self.running[name] += 1
        return name

    def done(self, name: str, injected: bool) -> None:
        self.running[name] -= 1
        if injected:
            self.injected[name] += 1
