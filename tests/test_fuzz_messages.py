"""Hypothesis fuzz of the message parser and the dead-letter envelope.

Properties: ``parse`` never raises and returns either a well-formed row or a reason from the
bounded set; an envelope is JSON from which ``original`` gives back the exact bytes; memory stays
proportional to the input; and a message ``parse`` accepts is stored by the real worker as exactly
that row (the last test pushes hypothesis-generated messages through a running worker).
"""

from __future__ import annotations

import json
import math
import re
import tracemalloc
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
import redis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.support.stores import push_raw, row_count, sql
from tests.support.waiting import wait_until
from trio_worker.config import Config
from trio_worker.messages import (
    REASONS,
    Stamps,
    envelope,
    invalid_reason,
    original,
    parse,
    parse_all,
)

DEFAULT_TS = "2001-02-03 04:05:06"
ROW_TS = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Text that reaches the odd corners: NUL, quotes, backslashes, astral planes, combining marks.
odd_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]) | st.sampled_from("\0'\"\\%_"),
    max_size=300,
)
odd_numbers = (
    st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([0, -0.0, 1e-320, 2**63, -(2**63) - 1, 253402300799, 253402300800, -1e10])
)
timestamps = (
    odd_numbers
    | st.datetimes(timezones=st.none() | st.timezones()).map(lambda d: d.isoformat())
    | odd_text
    | st.none()
    | st.booleans()
    | st.lists(st.integers(), max_size=3)
)
json_values = st.recursive(
    st.none() | st.booleans() | odd_numbers | odd_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(odd_text, inner, max_size=4),
    max_leaves=20,
)


def _encode(doc: Any, ascii_only: bool) -> bytes:
    # The stdlib encoder writes NaN/Infinity literals and \\uXXXX escapes (lone surrogates too,
    # which orjson could never produce): both are inputs a sloppy producer might send.
    return json.dumps(doc, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    """Mostly vote-shaped JSON objects, with every field sometimes wrong in some odd way."""
    doc: dict[str, Any] = draw(st.dictionaries(odd_text, json_values, max_size=3))
    for name, value in (
        ("voter_id", odd_text | json_values),
        ("vote", st.text(max_size=12) | json_values),
        ("timestamp", timestamps),
    ):
        if draw(st.integers(0, 9)):
            doc[name] = draw(value)
    if draw(st.booleans()):
        doc["voter_id"] = draw(st.text(min_size=1, max_size=255) | st.just("\ud800x"))
    return _encode(doc, draw(st.booleans()))


def check_parsed(raw: bytes) -> None:
    result = parse(raw, DEFAULT_TS, None)
    if isinstance(result, str):
        assert result in REASONS
        return
    voter_id, vote, stamp = result
    assert 1 <= len(voter_id) <= 255
    assert 1 <= len(vote) <= 10
    assert ROW_TS.fullmatch(stamp)
    assert 1000 <= int(stamp[:4]) <= 9999
    # Whatever is accepted can be sent to MySQL as utf8mb4 (no lone surrogates sneak through).
    (voter_id + vote).encode("utf-8")
    doc = orjson.loads(raw)
    assert (doc["voter_id"], doc["vote"]) == (voter_id, vote)


@FUZZ
@given(st.binary(max_size=2000))
def test_parse_never_raises_on_arbitrary_bytes(raw: bytes) -> None:
    check_parsed(raw)


@pytest.mark.slow
@FUZZ
@given(messages())
def test_parse_never_raises_on_vote_shaped_json(raw: bytes) -> None:
    check_parsed(raw)


def plain_parse(raw: bytes, choices: frozenset[str] | None) -> tuple[str, str, str] | str:
    """One message, checked the plain way, one check after another."""
    if not raw:
        return "empty"
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            return "not_utf8"
        return "not_json"
    reason = invalid_reason(doc, choices)
    if reason is not None:
        return reason
    stamp = doc.get("timestamp")
    text = DEFAULT_TS if stamp is None else Stamps().text(stamp)
    return "bad_timestamp" if text is None else (doc["voter_id"], doc["vote"], text)


def _sized(length: int) -> st.SearchStrategy[str]:
    return st.text(min_size=length, max_size=length)


# Votes at the edges of every check: lengths just in and just out, a choice or not.
edges = st.builds(
    lambda voter_id, vote, ascii_only: _encode({"voter_id": voter_id, "vote": vote}, ascii_only),
    st.sampled_from([0, 1, 255, 256]).flatmap(_sized),
    st.sampled_from([0, 1, 10, 11]).flatmap(_sized) | st.sampled_from(["a", "b", "c"]),
    st.booleans(),
)


# Where a JSON reader could differ: duplicate keys, escaped keys, integers past 64 bits,
# booleans and objects for a timestamp, nesting past any limit.
odd_json = st.sampled_from(
    [
        b'{"voter_id":"a","voter_id":"b","vote":"x"}',
        b'{"voter_id":"a","vote":"x","vote":"too long a vote"}',
        b'{"voter\\u005fid":"a","vote":"x"}',
        b'{"voter_id":"a","vote":"x","timestamp":18446744073709551615}',
        b'{"voter_id":"a","vote":"x","timestamp":18446744073709551616}',
        b'{"voter_id":"a","vote":"x","timestamp":-9223372036854775809}',
        b'{"voter_id":"a","vote":"x","timestamp":1700000000.999999}',
        b'{"voter_id":"a","vote":"x","timestamp":true}',
        b'{"voter_id":"a","vote":"x","timestamp":{"t":1}}',
        b'{"voter_id":"a","vote":"x","z":' + b"[" * 5000 + b"]" * 5000 + b"}",
        b"[" * 5000,
    ]
)


@pytest.mark.slow
@FUZZ
@given(
    st.lists(st.one_of(messages(), edges, odd_json, st.binary(max_size=50)), max_size=30),
    st.none() | st.frozensets(st.sampled_from(["a", "b"]) | st.text(max_size=11), max_size=3),
)
def test_a_batch_parses_as_each_message_alone(
    raws: list[bytes], choices: frozenset[str] | None
) -> None:
    parsed = parse_all(raws, DEFAULT_TS, choices)
    plain = [plain_parse(raw, choices) for raw in raws]
    assert parsed.rows == [p for p in plain if isinstance(p, tuple)]
    assert parsed.invalid == [(i, p) for i, p in enumerate(plain) if isinstance(p, str)]
    assert parsed.sources == [
        raw for raw, p in zip(raws, plain, strict=True) if isinstance(p, tuple)
    ]
    assert parsed.counts == dict(Counter(row[1] for row in parsed.rows))


@FUZZ
@given(st.one_of(st.binary(max_size=500), messages()), st.sampled_from(REASONS), odd_text)
def test_envelope_round_trips_to_the_original_bytes(raw: bytes, reason: str, who: str) -> None:
    at = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    env = envelope(raw, reason, who, at)
    doc = orjson.loads(env)
    assert doc["reason"] == reason
    assert doc["worker_id"] == who
    assert doc["encoding"] in ("text", "base64")
    assert original(env) == raw


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 1_000_000,
        b'{"a":' * 300_000 + b"1" + b"}" * 300_000,
        b'{"voter_id":"' + b"x" * 5_000_000 + b'","vote":"a"}',
        b'{"voter_id":"v","vote":"a","timestamp":' + b"9" * 100_000 + b"}",
        b'{"voter_id":"v","vote":"a","timestamp":1' + b"0" * 400 + b".5}",
        b'{"voter_id":"v","vote":"a","timestamp":NaN}',
        b'{"voter_id":"v","vote":"a","timestamp":"' + b"2" * 1_000_000 + b'"}',
        b"\0" * 100_000,
        b"\xed\xa0\x80" * 10_000,
        b'"' + b"\\ud800" * 100_000 + b'"',
    ],
    ids=[
        "deep-array",
        "deep-object",
        "huge-voter-id",
        "huge-integer",
        "huge-float",
        "nan",
        "huge-timestamp",
        "nul-bytes",
        "surrogate-bytes",
        "escaped-surrogates",
    ],
)
def test_hostile_inputs_are_rejected_in_bounded_memory(raw: bytes) -> None:
    tracemalloc.start()
    try:
        result = parse(raw, DEFAULT_TS, None)
        env = envelope(raw, str(result), "w", datetime.now(UTC))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert isinstance(result, str), result
    assert result in REASONS
    assert original(env) == raw
    # Bounded: linear in the message (the decoded text, its JSON-escaped copy, orjson's buffer).
    assert peak < 16 * len(raw) + 1_000_000


def test_accepted_numbers_are_finite_and_in_range() -> None:
    for stamp in (math.nan, math.inf, -math.inf, 1e19, -1e19):
        raw = orjson.dumps({"voter_id": "v", "vote": "a", "timestamp": str(stamp)})
        assert parse(raw, DEFAULT_TS, None) == "bad_timestamp"
    nan = _encode({"voter_id": "v", "vote": "a", "timestamp": math.nan}, True)
    assert parse(nan, DEFAULT_TS, None) in REASONS


# ------------------------------------------------------------ round trip through the worker


def _collect_valid(n: int) -> list[bytes]:
    """``n`` distinct hypothesis-generated messages that ``parse`` accepts (no time of take)."""
    found: dict[str, bytes] = {}

    @settings(
        max_examples=n * 4,
        database=None,
        derandomize=True,
        phases=[Phase.generate],
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(
        voter_id=st.text(min_size=1, max_size=250).map(lambda s: s.strip("\x00") or "x") | odd_text,
        vote=st.text(min_size=1, max_size=10),
        stamp=timestamps.filter(lambda t: t is not None),
        ascii_only=st.booleans(),
    )
    def collect(voter_id: str, vote: str, stamp: Any, ascii_only: bool) -> None:
        voter_id = f"{len(found)}|{voter_id}"[:255]
        raw = _encode({"voter_id": voter_id, "vote": vote, "timestamp": stamp}, ascii_only)
        if len(found) < n and isinstance(parse(raw, DEFAULT_TS, None), tuple):
            found[voter_id] = raw

    collect()
    return list(found.values())


@pytest.mark.timeout(60)
async def test_every_accepted_message_is_stored_as_exactly_its_row(
    config: Config, rds: redis.Redis, start_worker: Any
) -> None:
    raws = _collect_valid(150)
    assert len(raws) >= 100
    expected = {}
    for raw in raws:
        row = parse(raw, DEFAULT_TS, None)
        assert isinstance(row, tuple)
        expected[row[0]] = row
    push_raw(rds, config, *raws)
    worker = await start_worker(config, batch_size=37)
    await wait_until(lambda: row_count(config) >= len(raws), what="every row")
    worker.stop.set()
    await wait_until(lambda: worker.exit_status, timeout_s=10, what="the worker to exit")
    assert worker.exit_status == [0]
    stored = sql(
        config,
        "SELECT voter_id, vote, DATE_FORMAT(timestamp, '%Y-%m-%d %H:%i:%s') FROM votes",
    )
    assert len(stored) == len(expected)
    assert {r[0]: (r[0], r[1], r[2]) for r in stored} == expected
    assert rds.llen(config.dead_letter_queue) == 0
