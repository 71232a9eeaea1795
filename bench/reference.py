"""A fixed piece of Python work timed in CPU seconds: how fast this machine is right now.

This VM's speed moves under us (a one-connection insert loop went from 165k to 235k votes/s in
six quiet minutes, docs/performance.md), and the worker's CPU per vote moves with it. The
reference loop does per-vote work of the worker's kind in the bench's own process (orjson parse,
type checks, a tuple, SQL text, a Counter) with no I/O; its CPU per vote, taken right before a
drain, lets figures from different hours be compared: worker µs/vote ÷ reference µs/vote.
"""

from __future__ import annotations

import time
from collections import Counter

import orjson

VOTES = 20_000
REPEATS = 5


def _work(messages: list[bytes]) -> str:
    rows = []
    for raw in messages:
        doc = orjson.loads(raw)
        voter, choice = doc["voter_id"], doc["vote"]
        if type(voter) is str and type(choice) is str and 0 < len(voter) <= 255:
            rows.append((voter, choice, "2026-01-01 00:00:00"))
    Counter(choice for _, choice, _ in rows)
    return ",".join([f"('{v}','{c}','{t}')" for v, c, t in rows])


def reference_us_per_vote() -> float:
    """CPU µs per vote of the reference loop: the best of ``REPEATS`` passes of ``VOTES``."""
    messages = [orjson.dumps({"voter_id": f"r{i}", "vote": "ab"[i & 1]}) for i in range(VOTES)]
    best = float("inf")
    for _ in range(REPEATS):
        started = time.process_time()
        _work(messages)
        best = min(best, time.process_time() - started)
    return best / VOTES * 1e6
