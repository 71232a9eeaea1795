"""Dead letters: why a message was refused (a fixed set of reasons, so they can be metric
labels), and the JSON envelope that keeps the original message, who refused it and when.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import orjson

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
