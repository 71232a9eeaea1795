"""A vote: parsing and validating the messages of a batch.

This is the per-vote hot path, so it allocates little: a valid message becomes a plain tuple
``(voter_id, vote, timestamp)`` ready for SQL, an invalid one becomes a reason from the bounded
set ``letters.REASONS``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Annotated, cast

import msgspec
import orjson

from trio_worker.messages.letters import (
    BAD_TIMESTAMP,
    BAD_VOTE,
    BAD_VOTER_ID,
    EMPTY,
    NOT_JSON,
    NOT_OBJECT,
    NOT_UTF8,
    VOTE_NOT_ALLOWED,
)
from trio_worker.messages.stamps import Stamps

Row = tuple[str, str, str]
"""A valid vote: voter_id, vote, and its UTC timestamp as ``YYYY-MM-DD HH:MM:SS``."""


@dataclass
class Parsed:
    """A list of messages, parsed: ``rows`` (with their messages, ``sources``) go to MySQL,
    ``invalid`` (position, reason) to the dead letters; ``other`` holds the positions of the
    items that were not messages (an oversized message's description)."""

    rows: list[Row] = field(default_factory=list)
    sources: list[bytes] = field(default_factory=list)
    invalid: list[tuple[int, str]] = field(default_factory=list)
    other: list[int] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)  # rows by vote


class _Vote(msgspec.Struct, gc=False):
    """A valid vote's shape, decoded and checked in C (``msgspec``) without a dict. A message
    that decodes into it is a vote as the plain checks would say (``invalid_reason``, with
    ``orjson``); any other goes the plain way for its reason. tests/test_fuzz_messages.py holds
    the two to the same answers. Untracked by the garbage collector (``gc=False``, quicker to
    decode): it holds strings and numbers only, so it can be in no reference cycle."""

    voter_id: Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
    vote: Annotated[str, msgspec.Meta(min_length=1, max_length=10)]
    timestamp: str | int | float | None = None


# Where the two readers differ, the answer doesn't: an integer beyond 64 bits, which orjson
# reads as a float, is a timestamp past year 9999 either way (bad_timestamp).
_decode_vote = msgspec.json.Decoder(_Vote).decode


def parse_all(
    items: Sequence[object], default_timestamp: str, choices: Collection[str] | None
) -> Parsed:
    """Parse every message of a batch (the per-vote hot path: one loop, no call per vote).

    A message that decodes into ``_Vote`` is a row (its vote allowed, its timestamp readable);
    any other is judged by ``plain_parse``. An item that is not ``bytes`` is left to the
    caller (``other``). Never raises.
    """
    out = Parsed()
    rows, invalid = out.rows, out.invalid
    decode, stamps = _decode_vote, Stamps()
    exact = stamps.exact
    # Not a vote's shape (a ValidationError is a DecodeError), or nested too deep to walk.
    decode_errors = (msgspec.DecodeError, RecursionError)
    for position, raw in enumerate(items):
        if type(raw) is not bytes:
            out.other.append(position)
            continue
        try:
            doc = decode(raw)
        except decode_errors:
            pass
        else:
            vote, stamp = doc.vote, doc.timestamp
            # Most timestamps repeat one read already (``Stamps``; msgspec never gives a bool).
            text = default_timestamp if stamp is None else (exact.get(stamp) or stamps.text(stamp))
            if choices is not None and vote not in choices:
                invalid.append((position, VOTE_NOT_ALLOWED))
            elif text is None:
                invalid.append((position, BAD_TIMESTAMP))
            else:
                rows.append((doc.voter_id, vote, text))
            continue
        found = plain_parse(raw, default_timestamp, choices, stamps)
        if isinstance(found, str):
            invalid.append((position, found))
        else:
            rows.append(found)
    out.counts = dict(Counter(map(itemgetter(1), rows)))
    # The message of each row: every item, unless some were not votes (rare, so not per vote).
    skipped = {position for position, _ in invalid}.union(out.other)
    sources = (
        [raw for position, raw in enumerate(items) if position not in skipped] if skipped else items
    )
    out.sources = cast("list[bytes]", list(sources))
    return out


def plain_parse(
    raw: bytes, default_timestamp: str, choices: Collection[str] | None, stamps: Stamps
) -> Row | str:
    """One message, the plain way: ``orjson``, then the checks in order. A row, or the reason
    it is not one."""
    if not raw:
        return EMPTY
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return NOT_UTF8 if _not_utf8(raw) else NOT_JSON
    reason = invalid_reason(doc, choices)
    if reason is not None:
        return reason
    stamp = doc.get("timestamp")
    if stamp is None:
        return (doc["voter_id"], doc["vote"], default_timestamp)
    text = stamps.text(stamp)
    return BAD_TIMESTAMP if text is None else (doc["voter_id"], doc["vote"], text)


def invalid_reason(doc: object, choices: Collection[str] | None) -> str | None:
    """Why a parsed message is not a vote, the checks in order; None for a vote (its timestamp
    aside)."""
    if type(doc) is not dict:
        return NOT_OBJECT
    voter_id = doc.get("voter_id")
    if type(voter_id) is not str or not 0 < len(voter_id) <= 255:
        return BAD_VOTER_ID
    vote = doc.get("vote")
    if type(vote) is not str or not 0 < len(vote) <= 10:
        return BAD_VOTE
    if choices is not None and vote not in choices:
        return VOTE_NOT_ALLOWED
    return None


def _not_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def parse(raw: bytes, default_timestamp: str, choices: Collection[str] | None) -> Row | str:
    """Turn one queue message into a row, or into the reason it is invalid. Never raises."""
    parsed = parse_all([raw], default_timestamp, choices)
    return parsed.rows[0] if parsed.rows else parsed.invalid[0][1]
