"""The per-vote hot path's shortcuts give exactly the answers of the plain path."""

from __future__ import annotations

import asyncio
import json
import socket
from datetime import UTC, datetime, timedelta

import pytest
import trio
import trio_asyncio
from hypothesis import example, given
from hypothesis import strategies as st

from trio_worker import messages
from trio_worker.bridge import aio
from trio_worker.messages import EXACT_MAX, TAILS_MAX, Stamps, _timestamp, parse, parse_all

iso = st.builds(
    lambda moment, sep, fraction, tail: moment.strftime(f"%Y-%m-%d{sep}%H:%M:%S") + fraction + tail,
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)),
    st.sampled_from(["T", " ", "t", "x"]),
    # Digits that are not ASCII (Arabic-Indic, full-width): decimal to a regex, not to a date.
    st.sampled_from(
        ["", ".5", ".123456", ".1234567", ",5", ".", ".12a", ".\u0661\u0662", ".\uff15"]
    ),
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
    assert TAILS_MAX // 2 < len(messages._utc_tails) <= TAILS_MAX


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


async def _reader_log(
    writes: int, scheduled_per_read: int, sockets: int = 1
) -> tuple[list[int], list[str]]:
    """Readers of ``sockets`` sockets, each scheduling ``scheduled_per_read`` callbacks per
    read, numbered as they are scheduled, and a Trio task that notes every turn it gets. Every
    socket gets a byte ``writes`` times, all in the same Trio step. Returns the numbers in the
    order the callbacks ran, and the readers', callbacks' and Trio task's turns in order."""
    ran: list[int] = []
    turns: list[str] = []
    scheduled = 0
    all_ran = trio.Event()
    pairs = [socket.socketpair() for _ in range(sockets)]

    def record(n: int) -> None:
        ran.append(n)
        turns.append("callback")
        if len(ran) == writes * scheduled_per_read * sockets:
            all_ran.set()

    def on_read(sock: socket.socket) -> None:
        nonlocal scheduled
        turns.append("reader")
        for _ in sock.recv(100):
            for _ in range(scheduled_per_read):
                loop.call_soon(record, scheduled)
                scheduled += 1

    async def trio_turns() -> None:
        while True:
            await trio.lowlevel.checkpoint()
            turns.append("trio")

    async with trio_asyncio.open_loop() as loop, trio.open_nursery() as nursery:
        nursery.start_soon(trio_turns)
        for left, _ in pairs:
            left.setblocking(False)
            loop.add_reader(left.fileno(), on_read, left)
        for _ in range(writes):
            for _, right in pairs:
                right.send(b"x")
            await trio.sleep(0.001)
        await all_ran.wait()
        for left, _ in pairs:
            loop.remove_reader(left.fileno())
        nursery.cancel_scope.cancel()
    for pair in pairs:
        for sock in pair:
            sock.close()
    return ran, turns


async def test_a_readers_callbacks_run_with_it_when_nothing_else_is_pending() -> None:
    ran, turns = await _reader_log(writes=20, scheduled_per_read=3)
    assert ran == sorted(ran)
    # Each read: the reader and the three callbacks it scheduled, with no Trio turn between.
    reads = "".join("R" if t == "reader" else "c" if t == "callback" else "." for t in turns)
    assert reads.count("R") == 20
    assert reads.count("Rccc") == 20, reads


async def test_an_asyncio_call_from_trio_takes_its_first_step_at_once() -> None:
    turns: list[str] = []

    async def call() -> int:
        turns.append("step")
        await asyncio.sleep(0)
        return 7

    async def trio_turns() -> None:
        while True:
            await trio.lowlevel.checkpoint()
            turns.append("trio")

    async with trio_asyncio.open_loop(), trio.open_nursery() as nursery:
        nursery.start_soon(trio_turns)
        await trio.sleep(0.01)
        for _ in range(5):
            turns.append("call")
            assert await aio(call) == 7
        nursery.cancel_scope.cancel()
    marks = "".join(t[0] for t in turns)  # c: call, s: its first step, t: a Trio turn
    assert marks.count("cs") == 5, marks


async def test_call_soon_checks_its_callback_in_debug_mode_only() -> None:
    async def not_a_callback() -> None: ...

    async with trio_asyncio.open_loop() as loop:
        loop.set_debug(True)
        with pytest.raises(TypeError, match="coroutines cannot be used with call_soon"):
            loop.call_soon(not_a_callback)
        loop.set_debug(False)
        loop.call_soon(not_a_callback).cancel()  # unchecked, as in asyncio's own loop


async def test_callbacks_run_in_the_order_they_were_scheduled_whatever_path_they_take() -> None:
    # Two sockets readable at once, and more callbacks per read than one burst runs inline:
    # the second reader runs while the first one's overflow is pending, and must not run its
    # own callbacks before those.
    ran, _ = await _reader_log(writes=30, scheduled_per_read=50, sockets=2)
    assert ran == list(range(30 * 50 * 2))
