"""The checker: what producers pushed against what the stores hold, with plain sync clients.

Rules, each failing the run:
- every valid vote is stored exactly once, with the vote and timestamp pushed (a pushed
  timestamp as UTC whole seconds; none: a moment after its push, less 10 s, and no later than
  10 s after the server's ``created_at`` for the row, whatever the worker's own clock said); a
  vote not stored must be in a ``stale_batch`` dead letter (``may_be_stored``: it is then
  quarantined, not lost); a stale letter for a stored vote is allowed and counted;
- every malformed message is dead-lettered exactly once, with its reason (or as ``stale_batch``);
- every oversized message is dead-lettered exactly once as ``too_large``, with a preview of its
  first bytes, ``truncated``, its ``size``, and an ``original_key`` under ``<VOTE_QUEUE>:`` whose
  list holds its original bytes and nothing else;
- nothing else is stored or dead-lettered;
- a push whose reply was lost landed whole or not at all, and such pushes stay few.
``leftovers`` checks what must be gone from Redis and the workers' logs.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import redis

from tests.race.clients import Clients, as_bytes
from tests.race.letters import decode, too_large_problem, voter_of
from tests.race.payloads import digest
from tests.race.producers import PRODUCERS, Producers
from tests.race.report import Report
from trio_worker.config import Config

# A vote without a timestamp is stamped when a worker took it: after its push; but a recovered
# batch is stamped with the time its batch id was minted, before its first take, which a stalled
# Redis can delay (a blackhole of up to 3 s, a restart of up to 2 s and the reconnect): seen 4 s
# before the push. Hours off (a time zone, an epoch mix-up) still fail.
TAKEN_SLACK = timedelta(seconds=10)
# ... and never later than the server's ``created_at`` for its row (its CURRENT_TIMESTAMP at the
# insert) by more than this, whatever the worker's own clock says (clock_step: +400 s). It may be
# earlier by more: a batch can wait that long to commit (MariaDB restarted twice in a row, a
# frozen connection): 15 s seen in a 30-minute run; -400 s fails the bound after the push.
SERVER_SLACK_S = 10.0


class Checker:
    def __init__(
        self, config: Config, producers: Producers, report: Report, clients: Clients
    ) -> None:
        self.config = config
        self.producers = producers
        self.report = report
        self.clients = clients
        # voter → (vote, timestamp, created_at in epoch seconds) of each row
        self.stored: dict[str, list[tuple[str, datetime, float]]] = defaultdict(list)
        self.stale: Counter[bytes] = Counter()  # originals in stale_batch letters
        self.lettered: dict[bytes, list[str]] = defaultdict(list)  # other originals → reasons
        self.too_large: Counter[bytes] = Counter()  # digests
        self.originals: set[str] = set()  # keys too_large letters point at
        self.done_at = datetime.now(UTC).replace(tzinfo=None)
        # How far before and after the server's created_at an unstamped vote's time is, at most.
        self.unstamped_early = self.unstamped_late = 0.0

    def wrong(self, text: str) -> None:
        self.report.wrong.append(text)

    def run(self) -> None:
        rows = self.clients.sql(
            "SELECT voter_id, vote, timestamp, UNIX_TIMESTAMP(created_at) FROM votes",
            self.config.mysql_database,
        )
        for voter, vote, stamp, created in rows:
            self.stored[str(voter)].append((str(vote), stamp, float(created)))
        self.report.stored = len(rows)
        client = self.clients.redis("checker")
        try:
            for raw in client.lrange(self.config.dead_letter_queue, 0, -1):
                self.letter(as_bytes(raw), client)
        finally:
            client.close()
        self.report.dead_lettered = (
            sum(len(r) for r in self.lettered.values())
            + sum(self.stale.values())
            + sum(self.too_large.values())
        )
        self.votes()
        self.malformed()
        self.oversized()
        self.uncertain()
        for original in self.stale:
            if original not in self.producers.malformed and (
                voter_of(original) not in self.producers.votes
            ):
                self.report.dead_wrong += 1
                self.wrong(f"stale_batch letter for a message never pushed: {original[:120]!r}")

    def letter(self, raw: bytes, client: redis.Redis) -> None:
        try:
            doc = json.loads(raw)
            original = decode(doc)
            reason = doc["reason"]
            if not (doc["worker_id"] and doc["time"]):
                raise ValueError("no worker_id or time")
        except (ValueError, KeyError, TypeError):
            self.report.dead_wrong += 1
            self.wrong(f"unreadable dead letter {raw[:200]!r}")
            return
        if reason == "too_large":
            self.too_large_letter(doc, original, client)
        elif reason == "stale_batch":
            self.stale[original] += 1
            if doc.get("may_be_stored") is not True:
                self.report.dead_wrong += 1
                self.wrong(f"stale_batch letter without may_be_stored: {raw[:200]!r}")
        else:
            self.lettered[original].append(reason)

    def too_large_letter(self, doc: dict[str, Any], preview: bytes, client: redis.Redis) -> None:
        key = doc.get("original_key")
        held = [as_bytes(x) for x in client.lrange(key, 0, -1)] if isinstance(key, str) else []
        why = too_large_problem(
            doc,
            preview,
            held,
            f"{self.config.vote_queue}:",
            self.producers.oversized,
            self.originals,
        )
        if isinstance(key, str):
            self.originals.add(key)
        if why:
            self.report.dead_wrong += 1
            self.wrong(f"too_large letter (size {doc.get('size')}, key {key!r}): {why}")
        else:
            self.too_large[digest(held[0])] += 1

    def votes(self) -> None:
        r, expected = self.report, self.producers.votes
        r.votes = len(expected)
        uncertain = {v for push in self.producers.failed for v in push.voters}
        stale_voters: Counter[str] = Counter()
        for original, n in self.stale.items():
            voter = voter_of(original)
            if voter in expected:
                stale_voters[voter] += n
        for voter in self.stored:
            if voter not in expected:
                self.wrong(f"stored but never pushed as a valid vote: {voter[:80]!r}")
        for voter in expected:
            rows, stale = self.stored.get(voter, []), stale_voters[voter]
            if stale > 1:
                r.dead_wrong += 1
                self.wrong(f"{voter[:80]!r} in {stale} stale_batch letters")
            if len(rows) > 1:
                r.duplicated += len(rows) - 1
                self.wrong(
                    f"duplicated: {voter[:80]!r} stored {len(rows)} times, pushed at "
                    f"{r.at(expected[voter].pushed_at)}, rows inserted at "
                    + ", ".join(r.at(created) for _, _, created in rows)
                )
            elif not rows and stale:
                r.quarantined += 1
            elif not rows and voter not in uncertain:
                r.lost += 1
                self.wrong(f"lost: {voter[:80]!r}, pushed at {r.at(expected[voter].pushed_at)}")
            elif rows:
                r.stale_for_stored += 1 if stale else 0
                self.values(voter, rows[0])
        r.details["stale_batch letters of stored votes"] += r.stale_for_stored
        r.unstamped_early_s, r.unstamped_late_s = self.unstamped_early, self.unstamped_late
        r.details["votes quarantined in stale_batch letters"] += r.quarantined

    def values(self, voter: str, row: tuple[str, datetime, float]) -> None:
        vote, stamp, created = row
        want = self.producers.votes[voter]
        low = datetime.fromtimestamp(int(want.pushed_at), UTC).replace(tzinfo=None) - TAKEN_SLACK
        off_server = stamp.replace(tzinfo=UTC).timestamp() - created
        ok_stamp = (
            stamp == want.stamp
            if want.stamp is not None
            else low <= stamp <= self.done_at + TAKEN_SLACK and off_server <= SERVER_SLACK_S
        )
        if want.stamp is None:
            self.unstamped_early = max(self.unstamped_early, -off_server)
            self.unstamped_late = max(self.unstamped_late, off_server)
        if vote != want.vote or not ok_stamp:
            self.report.wrong_values += 1
            self.wrong(
                f"{voter[:80]!r} stored as ({vote!r}, {stamp}; {off_server:+.0f}s off the "
                f"server's created_at), pushed as ({want.vote!r}, "
                f"{want.stamp or f'no timestamp, pushed {low + TAKEN_SLACK}'})"
            )

    def malformed(self) -> None:
        r, bad = self.report, self.producers.malformed
        r.malformed = len(bad)
        uncertain = {m for push in self.producers.failed for m in push.malformed}
        for original, reasons in self.lettered.items():
            if original not in bad:
                r.dead_wrong += len(reasons)
                self.wrong(
                    f"dead-lettered ({reasons}) but not pushed malformed: {original[:120]!r}"
                )
        for message, reason in bad.items():
            reasons, stale = self.lettered.get(message, []), self.stale[message]
            if len(reasons) + stale > 1:
                r.dead_wrong += 1
                self.wrong(f"dead-lettered {reasons} + {stale} stale: {message[:120]!r}")
            elif reasons and reasons[0] != reason:
                r.dead_wrong += 1
                self.wrong(f"dead-lettered as {reasons[0]}, not {reason}: {message[:120]!r}")
            elif not reasons and not stale and message not in uncertain:
                r.dead_wrong += 1
                self.wrong(f"malformed message never dead-lettered: {message[:120]!r}")

    def oversized(self) -> None:
        r = self.report
        r.oversized = len(self.producers.oversized)
        uncertain = {d for push in self.producers.failed for d in push.oversized}
        for key, size in self.producers.oversized.items():
            n = self.too_large[key]
            if n > 1 or (n == 0 and key not in uncertain):
                r.dead_wrong += 1
                self.wrong(
                    f"oversized message of {size} bytes dead-lettered {n} times as too_large"
                )

    def uncertain(self) -> None:
        """Each push whose reply was lost landed whole or not at all; few such pushes."""
        r, failed = self.report, self.producers.failed
        r.uncertain_pushes = len(failed)
        r.uncertain_votes = sum(len(p.voters) for p in failed)
        in_letters = {*self.lettered, *self.stale, *(voter_of(o) for o in self.stale)}
        for push in failed:
            landed = [v in self.stored or v in in_letters for v in push.voters]
            landed += [m in in_letters for m in push.malformed]
            landed += [self.too_large[d] > 0 for d in push.oversized]
            if len(set(landed)) > 1:
                self.wrong(f"a push whose reply was lost landed in part: {landed}")
        allowed = PRODUCERS * r.faults["restart_redis"]
        if len(failed) > allowed:
            r.problem(f"{len(failed)} pushes failed; at most {allowed} may (Redis restarts)")
        if failed:
            r.details["pushes whose reply was lost (whole or nothing)"] += len(failed)
