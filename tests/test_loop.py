"""trio-asyncio's loop as the worker runs it: ``FastLoop``'s fewer Trio steps, asyncio's order
kept, and the stock loop (with one line saying why) wherever the fast path is off."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing
import trio_asyncio

from trio_worker import loop as fast
from trio_worker.bridge import aio
from trio_worker.loop import FastLoop, open_loop


@asynccontextmanager
async def fast_loop() -> AsyncIterator[Any]:
    async with open_loop(fast_path=True) as loop:
        assert type(loop) is FastLoop
        yield loop


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

    async with fast_loop(), trio.open_nursery() as nursery:
        nursery.start_soon(count_trio_steps)
        assert await aio(endless_chain) == 10_000
        nursery.cancel_scope.cancel()
    # One Trio step per burst of up to 33 callbacks, and the Trio task ran between bursts.
    assert 10_000 / 33 / 2 < trio_steps < 10_000 / 10  # without bursts: one per callback


async def _reader_log(
    writes: int, scheduled_per_read: int, sockets: int = 1, *, fast_path: bool = True
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

    async with open_loop(fast_path=fast_path) as loop, trio.open_nursery() as nursery:
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

    async with fast_loop(), trio.open_nursery() as nursery:
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

    async with fast_loop() as loop:
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


async def test_the_stock_loop_keeps_the_same_order() -> None:
    """What FastLoop must keep: with the fast path off, the same callbacks run in the same
    order (a reference for the test above)."""
    ran, _ = await _reader_log(writes=10, scheduled_per_read=50, sockets=2, fast_path=False)
    assert ran == list(range(10 * 50 * 2))


async def test_an_asyncio_call_started_inside_a_callback_run_inline_waits_its_turn() -> None:
    """A callback run inline that starts another asyncio call through the fast path does not
    nest a second inline run (the loop's inline state is its own, and guarded): the new call's
    first step joins the callbacks already pending, after them."""
    order: list[str] = []

    async def inner() -> None:
        order.append("inner")

    async def outer() -> None:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, FastLoop)

        def first() -> None:
            order.append("first")
            loop.start(inner())

        loop.call_soon(first)
        loop.call_soon(order.append, "second")  # pending before inner's first step exists
        await asyncio.sleep(0)
        await asyncio.sleep(0)

    async with fast_loop() as loop:
        await aio(outer)
        await loop.synchronize()
        assert loop._inline is None
    assert order == ["first", "second", "inner"]


async def test_an_asyncio_call_sees_the_loop_it_was_made_on_as_the_running_loop() -> None:
    """trio-asyncio finds the running loop from the Trio task a callback runs in. A call made
    on one loop from a Trio task whose own loop is another (nested ``open_loop``) runs its
    steps on the loop it was made on, as the stock loop runs them in that loop's own task."""

    async def running_loop() -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    async with fast_loop() as outer, fast_loop() as inner:
        await trio.testing.wait_all_tasks_blocked()
        assert trio_asyncio.current_loop.get() is inner
        assert await outer.run_aio_coroutine(running_loop()) is outer
        assert await inner.run_aio_coroutine(running_loop()) is inner


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast", "stock"])
async def test_an_asyncio_call_made_in_a_cancelled_scope_never_starts(fast_path: bool) -> None:
    """A caller already cancelled cancels its asyncio call before the call's first step (a
    command never sent), on either loop."""
    started: list[str] = []

    async def call() -> None:
        started.append("step")

    async with open_loop(fast_path=fast_path):
        await trio.testing.wait_all_tasks_blocked()
        with trio.CancelScope() as scope:
            scope.cancel()
            await aio(call)
        assert scope.cancelled_caught
    assert started == []


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast", "stock"])
async def test_a_call_that_lets_its_callers_cancellation_through_is_cancelled_at_once(
    fast_path: bool,
) -> None:
    """A step of an asyncio call that makes its caller's cancellation deliverable (here: lifts
    the shield between the caller and a cancelled scope) cancels the call before its next
    step, as when the caller waits while the loop's task runs the call: run inline, the rest of
    the call goes back to the loop's task."""
    steps: list[int] = []

    async with open_loop(fast_path=fast_path):
        await trio.testing.wait_all_tasks_blocked()
        with trio.CancelScope() as cancelled:
            cancelled.cancel()
            with trio.CancelScope(shield=True) as shield:

                async def call() -> None:
                    steps.append(1)
                    await asyncio.sleep(0)
                    shield.shield = False
                    steps.append(2)
                    await asyncio.sleep(0)
                    steps.append(3)

                await aio(call)
        assert cancelled.cancelled_caught
    assert steps == [1, 2]


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "trio_worker.loop"]


async def _runs_an_asyncio_call() -> None:
    async def call() -> int:
        await asyncio.sleep(0)
        return 3

    assert await aio(call) == 3


async def test_turned_off_the_stock_loop_runs_and_one_line_says_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with open_loop(fast_path=False) as loop:
        assert type(loop) is trio_asyncio.TrioEventLoop
        await _runs_an_asyncio_call()
    assert _warnings(caplog) == [
        "trio-asyncio fast path off: TRIO_ASYNCIO_FAST_PATH=false; the stock loop runs"
    ]


async def test_an_unverified_trio_asyncio_release_keeps_the_stock_loop(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(trio_asyncio, "__version__", "0.99.0")
    async with open_loop(fast_path=True) as loop:
        assert type(loop) is trio_asyncio.TrioEventLoop
        await _runs_an_asyncio_call()
    (line,) = _warnings(caplog)
    assert "trio-asyncio 0.99.0 is not a release it was verified on" in line


async def test_a_release_missing_what_the_fast_path_needs_keeps_the_stock_loop(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    scoped = fast._scoped_handle_type()
    owner = next(c for c in scoped.__mro__ if "_raise" in vars(c))
    monkeypatch.delattr(owner, "_raise")
    async with open_loop(fast_path=True) as loop:
        assert type(loop) is trio_asyncio.TrioEventLoop
        await _runs_an_asyncio_call()
    (line,) = _warnings(caplog)
    assert line.endswith("lacks ScopedHandle._raise; the stock loop runs"), line


async def test_the_fast_path_is_one_loops_own_and_importing_it_changes_nothing() -> None:
    stock = trio_asyncio.TrioEventLoop
    methods = {name: getattr(stock, name) for name in fast._LOOP_METHODS}
    async with fast_loop(), trio_asyncio.open_loop() as other:
        assert type(other) is stock
    assert {name: getattr(stock, name) for name in fast._LOOP_METHODS} == methods
