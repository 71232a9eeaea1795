"""The race suite: several producers and workers on one queue, random faults, then the checker.

``just test-race`` runs several seeds for about five minutes; ``just test`` runs one short seed.
Replay a run with ``--stress-seed N``. The last test holds the runs, summed, to each fault
kind's minimum count: a kind that stops firing (a request pattern that no longer matches, a
moment that never comes) fails the suite instead of silently testing less.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from tests.race.kinds import enabled
from tests.race.report import REPORTS, shortfalls
from tests.race.run import Run
from tests.race.settings import base_config, libfaketime
from tests.support.servers import OwnStores

pytestmark = [pytest.mark.race, pytest.mark.timeout(0)]


async def test_effectively_once_under_faults(
    seed: int, own_stores: OwnStores, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    duration = float(request.config.getoption("--stress-duration"))
    if libfaketime() is None and "clock_step" in {k.name for k in enabled(duration)}:
        pytest.fail(
            "clock_step needs libfaketime (Debian package faketime; .ci/run installs it), "
            "or leave the kind out: RACE_WITHOUT=clock_step",
            pytrace=False,
        )
    run = Run(seed, duration, own_stores, base_config(own_stores), tmp_path)
    # Hard cap: the faults' own bounds, the drain and the final SIGTERMs all fit well inside.
    with trio.fail_after(duration + 300):
        report = await run.execute(procs=3, inprocs=1, steady=1)
    REPORTS.append(report)
    if report.failed():
        pytest.fail(report.explain(), pytrace=False)


def test_each_kind_happened_often_enough() -> None:
    """Summed over this pytest run's seeds (it runs after them)."""
    if not REPORTS:
        pytest.skip("no race run in this pytest run")
    missing = shortfalls(REPORTS)
    assert not missing, "fault kinds below their minimum: " + "; ".join(missing)
