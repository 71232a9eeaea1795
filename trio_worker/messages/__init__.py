"""Messages: votes as producers send them (``votes``), their timestamps (``stamps``), and the
dead letters invalid ones become (``letters``)."""

from trio_worker.messages.letters import (
    BAD_TIMESTAMP,
    BAD_VOTE,
    BAD_VOTER_ID,
    EMPTY,
    NOT_JSON,
    NOT_OBJECT,
    NOT_UTF8,
    REASONS,
    REJECTED_BY_DATABASE,
    STALE_BATCH,
    TOO_LARGE,
    VOTE_NOT_ALLOWED,
    Original,
    envelope,
    original,
    too_large_envelope,
)
from trio_worker.messages.stamps import Stamps, format_utc, moment
from trio_worker.messages.votes import Parsed, Row, invalid_reason, parse, parse_all, plain_parse

__all__ = [
    "BAD_TIMESTAMP",
    "BAD_VOTE",
    "BAD_VOTER_ID",
    "EMPTY",
    "NOT_JSON",
    "NOT_OBJECT",
    "NOT_UTF8",
    "REASONS",
    "REJECTED_BY_DATABASE",
    "STALE_BATCH",
    "TOO_LARGE",
    "VOTE_NOT_ALLOWED",
    "Original",
    "Parsed",
    "Row",
    "Stamps",
    "envelope",
    "format_utc",
    "invalid_reason",
    "moment",
    "original",
    "parse",
    "parse_all",
    "plain_parse",
    "too_large_envelope",
]
