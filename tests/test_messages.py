"""The per-vote hot path's shortcuts give exactly the answers of the plain path."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from hypothesis import example, given
from hypothesis import strategies as st

from trio_worker.messages import parse, parse_all
from trio_worker.messages import stamps as stamp_module
from trio_worker.messages.stamps import EXACT_MAX, TAILS_MAX, Stamps, _timestamp

iso = st.builds(
    lambda moment, sep, precision, fraction, tail: (
        moment.strftime(f"%Y-%m-%d{sep}{precision}") + fraction + tail
    ),
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)),
    st.sampled_from(["T", " ", "t", "x"]),
    # Seconds, minutes, hours only, and a week date's time.
    st.sampled_from(["%H:%M:%S", "%H:%M", "%H", "%H%M%S", "%H:%M:%S:%S"]),
    # Digits that are not ASCII (Arabic-Indic, full-width): decimal to a regex, not to a date.
    st.sampled_from(
        ["", ".5", ".123456", ".1234567", ",5", ".", ".12a", ".\u0661\u0662", ".\uff15"]
    ),
    st.sampled_from(
        [
            *("", "Z", "z", "+00:00", "-00:00", "+0000", "+02:00", "-05:30", "+00", "UTC"),
            # Odd offsets, and offsets after offsets.
            *("+01", "-05", "+01Z", "+01.5", "-05+00:00", "+01:00Z", "+00:00:00", "+01:30:15"),
            *("-00", "+0530", "+00:00.5", "Z+00:00", "+24:00", "-23:59"),
        ]
    ),
)
# A float whose fraction rounds up to the next second at the microsecond.
carrying = st.builds(lambda s: s + 0.9999996, st.integers(min_value=0, max_value=10**10))
stamp = st.one_of(
    iso,
    carrying,
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.none(),
    st.booleans(),
)


# Numbers equal across types (1 == 1.0 == True), which one dict of what was read must tell apart.
equal_numbers = st.sampled_from([0, 1, 0.0, 1.0, -1, -1.0, True, False, 2e11, 200_000_000_000])


@given(st.lists(stamp | equal_numbers, max_size=20))
@example(["2027-01-15T08:00:00.\u0661\u0662\u0663Z"])  # a fraction in Arabic-Indic digits
def test_stamps_agree_with_the_plain_parse(values: list[object]) -> None:
    stamps = Stamps()
    for value in values + values:  # the second time from what it remembered
        assert stamps.text(value) == _timestamp(value), value


@given(st.lists(stamp | equal_numbers, min_size=1, max_size=20))
def test_a_batch_reads_each_timestamp_as_its_message_alone_would(values: list[object]) -> None:
    """parse_all looks a timestamp up among those its batch read already: the same rows and
    reasons as parsing each message on its own."""
    raws = [
        json.dumps({"voter_id": f"v{i}", "vote": "a", "timestamp": v}).encode()
        for i, v in enumerate(values)
    ]
    raws += raws  # the second time from what the batch remembered
    alone = [parse(raw, "2000-01-01 00:00:00", None) for raw in raws]
    batch = parse_all(raws, "2000-01-01 00:00:00", None)
    assert batch.rows == [found for found in alone if isinstance(found, tuple)]
    assert [reason for _, reason in batch.invalid] == [f for f in alone if isinstance(f, str)]


def test_stamps_of_one_second_share_one_parse() -> None:
    base = datetime(2026, 11, 29, 10, 0, 0, tzinfo=UTC)
    stamps = Stamps()
    texts = {stamps.text((base + timedelta(microseconds=i)).isoformat()) for i in range(1000)}
    assert texts == {"2026-11-29 10:00:00"}
    # Timestamps that never repeat are remembered as they came up to a bound, not all.
    assert len(stamps.exact) == EXACT_MAX < 1000


def test_the_tails_remembered_across_batches_are_bounded() -> None:
    base = datetime(2026, 11, 29, 10, 0, 0, tzinfo=UTC)
    stamps = Stamps()
    for i in range(TAILS_MAX + 100):
        moment = base + timedelta(microseconds=i)
        assert stamps.text(moment.isoformat()) == _timestamp(moment.isoformat())
    assert TAILS_MAX // 2 < len(stamp_module._utc_tails) <= TAILS_MAX
