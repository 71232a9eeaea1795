"""The race suite: several producers and workers on one queue, random faults, then the checker.

``just test-race`` runs several seeds for about five minutes; ``just test`` runs one short seed.
Replay a run with ``--stress-seed N``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from tests.race.harness import REPORTS, Run, base_config
from tests.servers import OwnStores

pytestmark = [pytest.mark.race, pytest.mark.timeout(0)]


async def test_effectively_once_under_faults(
    seed: int, own_stores: OwnStores, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    duration = float(request.config.getoption("--stress-duration"))
    run = Run(seed, duration, own_stores, base_config(own_stores), tmp_path)
    # Hard cap: the faults' own bounds, the drain and the final SIGTERMs all fit well inside.
    with trio.fail_after(duration + 240):
        report = await run.execute(procs=3, inprocs=1)
    REPORTS.append(report)
    if report.problems or report.lost or report.duplicated or report.dead_wrong:
        pytest.fail(
            f"seed {seed} (replay: --stress-seed {seed})\n"
            + report.line()
            + "\nproblems:\n  "
            + "\n  ".join(report.problems)
            + "\nfault schedule:\n  "
            + "\n  ".join(report.schedule),
            pytrace=False,
        )
