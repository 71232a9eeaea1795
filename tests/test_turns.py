"""pipeline.Turns: batches insert in the order they were taken, whatever order they arrive in."""

from __future__ import annotations

import trio

from trio_worker.pipeline import Turns


async def test_a_batch_waits_for_the_earlier_ones_to_insert() -> None:
    turns = Turns()
    order: list[int] = []

    async def insert(n: int) -> None:
        await turns.wait(n)
        order.append(n)
        await trio.sleep(0.001)
        turns.done(n)

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            for n in (2, 1, 0):  # arrive in the opposite order
                nursery.start_soon(insert, n)
    assert order == [0, 1, 2]


async def test_done_is_idempotent_and_accepts_any_order() -> None:
    turns = Turns()
    turns.done(1)  # an empty batch needs no turn, and may finish before the one ahead of it
    turns.done(0)
    turns.done(0)
    with trio.fail_after(1):
        await turns.wait(2)  # 0 and 1 are done: 2's turn has come
