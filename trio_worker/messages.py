"""The message format: parsing and validating votes, and the dead-letter envelope.

This is the per-vote hot path, so it allocates little: a valid message becomes a plain tuple
``(voter_id, vote, timestamp)`` ready for SQL, an invalid one becomes a reason string from the
bounded set ``REASONS`` (bounded, because reasons are metric label values).
"""

from __future__ import annotations

import base64
import math
import re
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import itemgetter
from typing import Annotated, cast

import msgspec
import orjson

Row = tuple[str, str, str]
"""A valid vote: voter_id, vote, and its UTC timestamp as ``YYYY-MM-DD HH:MM:SS``."""

EMPTY = "empty"
NOT_UTF8 = "not_utf8"
NOT_JSON = "not_json"
NOT_OBJECT = "not_object"
BAD_VOTER_ID = "bad_voter_id"
BAD_VOTE = "bad_vote"
VOTE_NOT_ALLOWED = "vote_not_allowed"
BAD_TIMESTAMP = "bad_timestamp"
REJECTED_BY_DATABASE = "rejected_by_database"
TOO_LARGE = "too_large"
STALE_BATCH = "stale_batch"
REASONS = (
    EMPTY,
    NOT_UTF8,
    NOT_JSON,
    NOT_OBJECT,
    BAD_VOTER_ID,
    BAD_VOTE,
    VOTE_NOT_ALLOWED,
    BAD_TIMESTAMP,
    REJECTED_BY_DATABASE,
    TOO_LARGE,
    STALE_BATCH,
)

# MySQL DATETIME holds years 1000 to 9999.
_MIN_YEAR = 1000


def format_utc(moment: datetime) -> str:
    """A UTC datetime as MySQL DATETIME text, truncated to whole seconds."""
    return moment.replace(tzinfo=None).isoformat(sep=" ", timespec="seconds")


def moment(value: object) -> datetime | None:
    """A message's ``timestamp`` as a naive UTC datetime, or None if it can't be read."""
    try:
        if isinstance(value, str):
            found = datetime.fromisoformat(value)
            if found.tzinfo is not None:
                found = found.astimezone(UTC).replace(tzinfo=None)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            if not math.isfinite(value):
                return None
            found = datetime.fromtimestamp(value, tz=UTC).replace(tzinfo=None)
        else:
            return None
    except (ValueError, OverflowError, OSError):
        return None
    return None if found.year < _MIN_YEAR else found


def _timestamp(value: object) -> str | None:
    """The stored form of a message's timestamp, or None if it can't be read."""
    found = moment(value)
    return None if found is None else format_utc(found)


# What may follow a timestamp's whole seconds and still mean UTC: a fraction, Z, a zero offset.
# ASCII digits only: a str pattern's \d also takes other scripts' digits, which no date reads.
_UTC_TAIL = re.compile(r"(?:\.\d{1,6})?(?:Z|[+-]00:?00)?", re.ASCII)


# The most timestamps a batch remembers as they came: those of a slow producer never repeat.
EXACT_MAX = 256

# What follows the seconds of timestamps read so far, and whether it means UTC, for every batch
# of the process: a producer's millisecond tails (".123Z") recur every second, and a lookup
# costs a third of a regex match. At most TAILS_MAX of them.
TAILS_MAX = 4096
_utc_tails: dict[str, bool] = {}


class Stamps:
    """Stored timestamps, remembered for one batch: the votes of a batch were mostly cast in
    the same few seconds, and parsing a timestamp costs more than the rest of a vote.

    ``exact`` maps timestamps read so far, strings or numbers as they came, to their text ("" if
    unreadable), up to ``EXACT_MAX`` of them. Producers stamp votes to the second or the
    millisecond, so at any busy rate most of a batch's timestamps repeat one read already, and
    ``parse_all`` looks them up there first. One not seen yet shares the parse of the others of
    its second (``_seen``). Numbers equal across types (1 and 1.0) have the same text; a bool,
    equal to 0 or 1, is never a key."""

    def __init__(self) -> None:
        self.exact: dict[str | int | float, str] = {}
        self._seen: dict[str | int, str] = {}

    def text(self, value: object) -> str | None:
        """``_timestamp(value)``: the same answer, found once per second of time."""
        if type(value) is str:
            # Past the seconds, a UTC tail (a fraction, Z, +00:00) can't change the stored value.
            tail = value[19:]
            utc = _utc_tails.get(tail)
            if utc is None:
                utc = _UTC_TAIL.fullmatch(tail) is not None
                if len(_utc_tails) < TAILS_MAX:
                    _utc_tails[tail] = utc
            key: str | int = value[:19] if utc and len(value) >= 19 else value
        elif type(value) is int or (type(value) is float and 0 <= value < 1e11):
            key = int(value)  # the stored value is truncated to the second
        else:
            return _timestamp(value)
        found = self._seen.get(key)
        if found is None:
            found = self._seen[key] = _timestamp(key) or ""
        if len(self.exact) < EXACT_MAX:
            self.exact[value] = found
        return found or None


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
    the two to the same answers. Untracked by the garbage collector (``gc=False``, 12% faster
    to decode): it holds strings and numbers only, so it can be in no reference cycle."""

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


def _text(raw: bytes) -> tuple[str, str]:
    try:
        return raw.decode("utf-8"), "text"
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode("ascii"), "base64"


def envelope(raw: bytes, reason: str, worker_id: str, at: datetime, **extra: object) -> bytes:
    """The dead-letter record of an invalid message: the original, why, who and when."""
    message, encoding = _text(raw)
    return orjson.dumps(
        {
            "message": message,
            "encoding": encoding,
            "reason": reason,
            "worker_id": worker_id,
            "time": at.astimezone(UTC).isoformat(timespec="milliseconds"),
            **extra,
        }
    )


def too_large_envelope(
    preview: bytes, size: int, original_key: str, worker_id: str, at: datetime
) -> bytes:
    """The dead letter of a message over MAX_MESSAGE_BYTES: its first bytes (``message``), its
    size, and the Redis list that holds the original, byte for byte (``original_key``)."""
    # The preview may end inside a UTF-8 character: cut it there, so text previews as text.
    for cut in range(min(4, len(preview))):
        try:
            preview[: len(preview) - cut].decode("utf-8")
        except UnicodeDecodeError:
            continue
        preview = preview[: len(preview) - cut]
        break
    return envelope(
        preview, TOO_LARGE, worker_id, at, truncated=True, size=size, original_key=original_key
    )


class Original:
    """Where a dead letter's original message is: its bytes, or the list that holds them."""

    def __init__(self, envelope_bytes: bytes) -> None:
        doc = orjson.loads(envelope_bytes)
        self.reason = str(doc.get("reason", ""))
        self.key: str | None = doc.get("original_key")
        self.may_be_stored = bool(doc.get("may_be_stored", False))
        if self.key is not None:
            self.raw = b""
        elif doc.get("encoding") == "base64":
            self.raw = base64.b64decode(doc["message"])
        else:
            self.raw = str(doc["message"]).encode("utf-8")


def original(envelope_bytes: bytes) -> bytes:
    """The original message inside a dead-letter envelope (not for ``too_large`` ones)."""
    return Original(envelope_bytes).raw
