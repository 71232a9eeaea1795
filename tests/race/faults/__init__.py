"""Fault injection, one module per family; ``inject`` runs one fault of a kind.

Each fault returns True if it was injected, False if its moment did not come (no idle worker,
no matching request within its window): the report counts both, and the minimums (``kinds``)
count only the first. A fault that finds the worker breaking the contract records a problem.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from tests.race.faults import clock, network, process, service, stores, twin

if TYPE_CHECKING:
    from tests.race.run import Run

Fault = Callable[["Run", random.Random], Awaitable[bool]]

FAULTS: dict[str, Fault] = {
    **process.FAULTS,
    **twin.FAULTS,
    **network.FAULTS,
    **stores.FAULTS,
    **clock.FAULTS,
    **service.FAULTS,
}


async def inject(run: Run, kind: str, rng: random.Random) -> bool:
    return await FAULTS[kind](run, rng)
