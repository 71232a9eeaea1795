"""The per-vote hot path's shortcuts give exactly the answers of the plain path."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import trio
import trio_asyncio
from hypothesis import given
from hypothesis import strategies as st

from trio_worker.bridge import aio
from trio_worker.messages import Stamps, _timestamp

iso = st.builds(
    lambda moment, sep, fraction, tail: moment.strftime(f"%Y-%m-%d{sep}%H:%M:%S") + fraction + tail,
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)),
    st.sampled_from(["T", " ", "t", "x"]),
    st.sampled_from(["", ".5", ".123456", ".1234567", ",5", ".", ".12a"]),
    st.sampled_from(["", "Z", "z", "+00:00", "-00:00", "+0000", "+02:00", "-05:30", "+00", "UTC"]),
)
stamp = st.one_of(
    iso,
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.none(),
    st.booleans(),
)


@given(st.lists(stamp, max_size=20))
def test_stamps_agree_with_the_plain_parse(values: list[object]) -> None:
    stamps = Stamps()
    for value in values + values:  # the second time from what it remembered
        assert stamps.text(value) == _timestamp(value), value


def test_stamps_of_one_second_share_one_parse() -> None:
    base = datetime(2026, 11, 29, 10, 0, 0, tzinfo=UTC)
    stamps = Stamps()
    texts = {stamps.text((base + timedelta(microseconds=i)).isoformat()) for i in range(1000)}
    assert texts == {"2026-11-29 10:00:00"}


async def test_asyncio_callbacks_run_in_bursts_and_never_starve_trio() -> None:
    """The loop runs the asyncio callbacks that are ready together (bounded), and a chain of
    callbacks that never ends still leaves Trio's tasks their turn."""
    trio_steps = 0

    async def count_trio_steps() -> None:
        nonlocal trio_steps
        while True:
            await trio.lowlevel.checkpoint()
            trio_steps += 1

    async def endless_chain() -> int:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[int] = loop.create_future()
        ran = 0

        def again() -> None:
            nonlocal ran
            ran += 1
            if ran < 10_000:
                loop.call_soon(again)
            else:
                done.set_result(ran)

        loop.call_soon(again)
        return await done

    async with trio_asyncio.open_loop(), trio.open_nursery() as nursery:
        nursery.start_soon(count_trio_steps)
        assert await aio(endless_chain) == 10_000
        nursery.cancel_scope.cancel()
    # One Trio step per burst of up to 33 callbacks, and the Trio task ran between bursts.
    assert 10_000 / 33 / 2 < trio_steps < 10_000 / 10  # without bursts: one per callback
