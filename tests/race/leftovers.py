"""What must be gone once every worker has drained, and what must never be in a worker's log.

After the final drain: nothing in the queue, no in-flight list, no entry in the registry of
in-flight lists, no heartbeat (a drained worker deletes its own; a killed one's expires within
the TTL), and no list under ``<VOTE_QUEUE>:`` but the dead letters and the originals of
oversized messages that dead letters point at. Every worker's log (the processes' and the
in-process worker's) is free of tracebacks and Trio/asyncio hygiene warnings.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from pathlib import Path

import redis

from tests.race.clients import Clients, as_bytes
from tests.race.report import Report
from tests.race.settings import BAD_LOG_LINES, HEARTBEAT_TTL_S
from trio_worker.config import Config


def check_keys(
    config: Config, clients: Clients, report: Report, drained: Collection[str], originals: set[str]
) -> None:
    q = config.vote_queue
    client = clients.redis("checker")
    try:
        if depth := client.llen(q):
            report.problem(f"{depth} messages left in the queue")
        if members := client.smembers(f"{q}:inflight"):
            names = sorted(as_bytes(m).decode(errors="replace") for m in members)
            report.problem(f"{len(names)} entries left in the in-flight registry: {names[:3]}")
        lists = [
            k
            for k in client.scan_iter(match=f"{q}:inflight:*", count=1000)
            if as_bytes(k).decode(errors="replace") not in originals
        ]
        if lists:
            held = sum(int(client.llen(k)) for k in lists)
            report.problem(
                f"{len(lists)} in-flight lists left, {held} votes in them: "
                + "; ".join(describe(config, client, lists[:5]))
            )
        beats = [k.decode() for k in client.scan_iter(match=f"{q}:worker:*", count=1000)]
        for key in beats:
            worker_id = key.removeprefix(f"{q}:worker:")
            if worker_id in drained:
                report.problem(f"{worker_id} drained but left its heartbeat")
            elif client.pttl(key) == -1:
                report.problem(f"heartbeat {key} has no TTL")
        # A killed worker's heartbeat expires by itself: give it its TTL.
        deadline = time.monotonic() + HEARTBEAT_TTL_S + 1
        while time.monotonic() < deadline and any(client.exists(k) for k in beats):
            time.sleep(0.1)
        if left := [k for k in beats if client.exists(k)]:
            report.problem(f"heartbeats left after their TTL: {left[:3]}")
        known = {config.dead_letter_queue, f"{q}:inflight", *originals}
        for raw in client.scan_iter(match=f"{q}:*", count=1000):
            key = raw.decode(errors="replace")
            if key in known or key.startswith((f"{q}:inflight:", f"{q}:worker:")):
                continue
            kind = as_bytes(client.type(raw)).decode()
            if kind == "list":
                report.problem(f"a list no dead letter points at: {key} ({client.llen(raw)})")
            else:
                report.details[f"other keys under the prefix ({kind})"] += 1
    finally:
        client.close()


def describe(config: Config, client: redis.Redis, keys: list[bytes]) -> list[str]:
    """What a stuck in-flight list is: its key, length, whether it is registered, whether its
    owner's heartbeat lives, and its first vote."""
    q = config.vote_queue
    out = []
    for raw in keys:
        key = as_bytes(raw).decode(errors="replace")
        owner = key.removeprefix(f"{q}:inflight:").rsplit(":", 1)[0]
        first = client.lindex(raw, 0)
        registered = client.sismember(f"{q}:inflight", key)
        out.append(
            f"{key} ({client.llen(raw)} votes, {'' if registered else 'NOT '}registered, "
            f"owner's heartbeat ttl {client.pttl(f'{q}:worker:{owner}')} ms, "
            f"first {as_bytes(first or b'')[:80]!r})"
        )
    return out


def check_logs(logs: Path, report: Report) -> None:
    for path in sorted(logs.glob("*.log")):
        for line in path.read_text(errors="replace").splitlines():
            if any(bad in line for bad in BAD_LOG_LINES):
                report.problem(f"{path.name}: {line.strip()[:300]}")
                break
