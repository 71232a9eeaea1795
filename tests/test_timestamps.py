"""Tricky timestamps through the real worker: each vote is stored at exactly the second the
reference reading gives (Python's ISO 8601 reader, ``datetime.fromisoformat``, or seconds since
the epoch), or dead-lettered as ``bad_timestamp`` where the reference can't read it. The batch
path's shortcuts (a timestamp's tail read once, numbers by their second) must never disagree.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
import redis

from tests.support.stores import push_raw, sql
from tests.support.waiting import wait_until
from trio_worker.config import Config
from trio_worker.messages.stamps import _timestamp

TRICKY: list[object] = [
    # Shorter times, with offsets whose digits sit where seconds would.
    "2027-01-15T08:00+01Z",
    "2027-01-15T08:00-05+00:00",
    "2027-01-15T08:00+01.5",
    "2027-01-15T08:00+01",
    "2027-01-15T08+01:00",
    "2027-01-15T08Z",
    "2027-01-15T08:00Z",
    "2027-01-15T08:00:00+01",
    "2027-01-15T08:00:00-0530",
    "2027-01-15T08:00:00+00",
    "2027-01-15T08:00:00Z+00:00",
    "2027-01-15T08:00:00+00:00:00",
    "2027-01-15T08:00:00+01:30:15",
    "2027-01-15T08:00:00+24:00",
    # Week dates, ordinal-less basic forms, other separators.
    "2027-W03-1T08:00:00",
    "2027W031T080000Z",
    "20270115T080000Z",
    "2027-01-15 08:00:00",
    "2027-01-15x08:00:00Z",
    "2027-01-15",
    # Odd fractions.
    "2027-01-15T08:00:00.9999999Z",
    "2027-01-15T08:00:00.5",
    "2027-01-15T08:00:00,5Z",
    "2027-01-15T08:00:00.Z",
    "2027-01-15T08:00:00.12aZ",
    "2027-01-15T23:59:59.9999995Z",
    # Digits that are not ASCII.
    "2027-01-15T08:00:00.\u0661\u0662Z",
    "\u0662\u0660\u0662\u0667-01-15T08:00:00Z",
    "2027-01-15T08:00:\uff10\uff10Z",
    # Out of range, empty, not a date.
    "2027-02-30T08:00:00Z",
    "2027-01-15T24:00:00Z",
    "0999-12-31T23:59:59Z",
    "9999-12-31T23:59:59-01:00",
    "",
    "now",
    # Numbers: seconds since the epoch.
    0,
    1,
    1.5,
    1.9999999999,
    1800000000.9999996,
    1800000000.9999994,
    -1,
    -0.5,
    1e11,
    253402300800,
    2**64,
    1.0e-7,
]


async def test_tricky_timestamps_are_stored_at_the_references_second_or_dead_lettered(
    config: Config, rds: redis.Redis, start_worker: Any
) -> None:
    assert len(TRICKY) == 47
    push_raw(
        rds,
        config,
        *(
            json.dumps({"voter_id": f"t{i}", "vote": "a", "timestamp": value})
            for i, value in enumerate(TRICKY)
        ),
    )
    expected = {f"t{i}": _timestamp(value) for i, value in enumerate(TRICKY)}
    await start_worker(config)
    readable = sum(1 for text in expected.values() if text is not None)
    await wait_until(
        lambda: (
            len(sql(config, "SELECT voter_id FROM votes")) == readable
            and rds.llen(config.dead_letter_queue) == len(TRICKY) - readable
        ),
        what="every tricky vote stored or dead-lettered",
    )
    stored = {v: str(t) for v, t in sql(config, "SELECT voter_id, timestamp FROM votes")}
    letters = [orjson.loads(e) for e in rds.lrange(config.dead_letter_queue, 0, -1)]
    refused = {orjson.loads(letter["message"])["voter_id"]: letter["reason"] for letter in letters}
    wrong = {
        voter: (TRICKY[int(voter[1:])], text, stored.get(voter), refused.get(voter))
        for voter, text in expected.items()
        if (
            stored.get(voter) != text if text is not None else refused.get(voter) != "bad_timestamp"
        )
    }
    assert not wrong, f"(timestamp, reference, stored, dead-lettered): {wrong}"
