"""What producers push, each message unique and with what the checker must find for it.

Valid votes carry odd votes now and then (quotes, backslashes, NUL, emoji: stored verbatim) and,
for about a third, a timestamp in one of the contract's forms (ISO 8601 with ``Z``, an offset, no
offset, a space; epoch seconds, whole or fractional), whose stored value (UTC, whole seconds)
the producer knows from the moment it encoded. Malformed messages carry the reason they must be
dead-lettered with. Oversized messages are longer than ``MAX_MESSAGE_BYTES``; long-id votes have
255-character voter ids, mostly of 4-byte characters, about 1 KB of INSERT text each.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

from tests.race.settings import MAX_MESSAGE_BYTES

ODD_VOTES = ("o'b", "a\\b", '"q"', "\u00e9t\u00e9", "\U0001f600", "nul\x00z", "ten chars!")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Vote:
    """A valid vote and the row it must become."""

    voter: str
    vote: str
    stamp: datetime | None  # the stored value (naive, UTC, whole seconds); None: when taken
    pushed_at: float  # wall-clock seconds just before its push


def digest(message: bytes) -> bytes:
    return hashlib.sha256(message).digest()


def _moment(rng: random.Random) -> datetime:
    start = datetime(2001, 1, 1, tzinfo=UTC)
    return start + timedelta(
        seconds=rng.randrange(35 * 365 * 86400), microseconds=rng.randrange(10**6)
    )


def timestamp(rng: random.Random) -> tuple[object, datetime]:
    """A timestamp field in one of the contract's forms, and the value it must be stored as."""
    moment = _moment(rng)
    form = rng.choice(["iso_z", "iso_offset", "iso_naive", "iso_space", "epoch", "epoch_frac"])
    if form == "epoch":
        moment = moment.replace(microsecond=0)
        value: object = int((moment - EPOCH).total_seconds())
    elif form == "epoch_frac":
        # Quarters are exact in binary: the stored second is certain.
        moment = moment.replace(microsecond=rng.choice([0, 250_000, 500_000, 750_000]))
        value = (moment - EPOCH).total_seconds()
    elif form == "iso_z":
        value = moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    elif form == "iso_offset":
        zone = timezone(timedelta(minutes=rng.randrange(-12 * 60, 14 * 60 + 1, 15)))
        value = moment.astimezone(zone).isoformat()
    elif form == "iso_naive":
        value = moment.replace(tzinfo=None).isoformat()
    else:
        value = moment.replace(tzinfo=None).isoformat(sep=" ", timespec="seconds")
    return value, moment.replace(microsecond=0, tzinfo=None)


def valid(
    rng: random.Random, voter: str, now: float, size: int | None = None
) -> tuple[bytes, Vote]:
    """A valid vote; with ``size``, padded to exactly that many bytes."""
    vote = rng.choice(ODD_VOTES) if rng.random() < 0.03 else rng.choice("abc")
    doc: dict[str, object] = {"voter_id": voter, "vote": vote}
    stamp = None
    if rng.random() < 0.35:
        doc["timestamp"], stamp = timestamp(rng)
    message = json.dumps(doc).encode()
    if size is not None:
        doc["pad"] = ""
        bare = len(json.dumps(doc).encode())
        doc["pad"] = "p" * (size - bare)
        message = json.dumps(doc).encode()
        assert len(message) == size
    return message, Vote(voter, vote, stamp, now)


def malformed(rng: random.Random, tag: str) -> tuple[bytes, str]:
    """An invalid message and the reason it must be dead-lettered with."""
    return rng.choice(
        [
            (f"not json {tag}".encode(), "not_json"),
            (json.dumps({"voter_id": f"x{tag}"}).encode(), "bad_vote"),
            (json.dumps({"voter_id": f"x{tag}", "vote": "much too long"}).encode(), "bad_vote"),
            (json.dumps([tag]).encode(), "not_object"),
            (
                json.dumps({"voter_id": f"x{tag}", "vote": "a", "timestamp": "soon"}).encode(),
                "bad_timestamp",
            ),
            (b"\xff\xfe" + tag.encode(), "not_utf8"),
            (json.dumps({"voter_id": 42, "vote": "a", "tag": tag}).encode(), "bad_voter_id"),
            (json.dumps({"voter_id": f"x{tag}" + "y" * 256, "vote": "a"}).encode(), "bad_voter_id"),
        ]
    )


def oversized(rng: random.Random, tag: str, variant: str) -> bytes:
    """A message longer than MAX_MESSAGE_BYTES: ``just_over`` (by up to 600 bytes, a valid vote
    but for its size), ``garbage`` (just over, not UTF-8), ``big`` (1-5 MB, a vote or text)."""
    if variant == "big":
        size = rng.randrange(1 << 20, 5 << 20)
        if rng.random() < 0.5:
            head = json.dumps({"voter_id": f"big-{tag}", "vote": "a"}).encode()[:-1]
            return head + b', "pad": "' + b"x" * (size - len(head) - 12) + b'"}'
        # Text whose characters are two bytes long: a preview may not cut one in half.
        return f"big text {tag} ".encode() + "\u00fc".encode() * (size // 2)
    size = MAX_MESSAGE_BYTES + rng.randrange(1, 600)
    if variant == "garbage":
        head = b"\xff" + tag.encode() + b" "
        return head + rng.randbytes(size - len(head))
    head = json.dumps({"voter_id": f"over-{tag}", "vote": "b"}).encode()[:-1]
    return head + b', "pad": "' + b"y" * (size - len(head) - 12) + b'"}'


def long_id(rng: random.Random, tag: str, now: float) -> tuple[bytes, Vote]:
    """A valid vote whose voter id is 255 characters, mostly of 4 UTF-8 bytes each."""
    head = f"L{tag}-"
    if rng.random() < 0.8:
        tail = "".join(chr(rng.randrange(0x1F600, 0x1F650)) for _ in range(255 - len(head)))
    else:
        tail = "".join(rng.choice("abcdefghij'\\") for _ in range(255 - len(head)))
    return valid(rng, head + tail, now)
