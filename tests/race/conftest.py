"""The race suite's own Redis and MariaDB, one run per seed, and a summary table at the end."""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.race.harness import FAULT_KINDS, REPORTS
from tests.servers import MariaDBServer, OwnStores, RedisServer


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "seed" not in metafunc.fixturenames:
        return
    config = metafunc.config
    seed = config.getoption("--stress-seed")
    if seed is not None:
        seeds = [int(seed)]
    else:
        # Fresh seeds each time (printed in the test id and the summary): replay one with
        # --stress-seed N.
        picker = random.Random(int.from_bytes(os.urandom(4), "big"))
        seeds = [picker.randrange(1, 2**31) for _ in range(config.getoption("--stress-seeds"))]
    metafunc.parametrize("seed", seeds, ids=[f"seed={s}" for s in seeds])


@pytest.fixture(scope="session")
def own_stores() -> Iterator[OwnStores]:
    """A redis-server and a mariadbd of our own, which the faults may restart."""
    if not (shutil.which("redis-server") and Path("/usr/sbin/mariadbd").exists()):
        pytest.skip("redis-server and mariadbd are needed to restart stores")
    root = Path(tempfile.mkdtemp(prefix="trio-worker-race-"))
    (root / "redis").mkdir()
    (root / "mysql").mkdir()
    stores = OwnStores(
        RedisServer("redis", root / "redis"), MariaDBServer("mariadb", root / "mysql")
    )
    try:
        stores.mysql.install()
        stores.redis.start_blocking()
        stores.mysql.start_blocking()
        yield stores
    finally:
        stores.stop()
        shutil.rmtree(root, ignore_errors=True)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not REPORTS:
        return
    tr = terminalreporter
    tr.section("race runs")
    for r in REPORTS:
        tr.write_line(r.line())
    total: Counter[str] = Counter()
    for r in REPORTS:
        total.update(r.faults)
    tr.write_line("")
    tr.write_line("| votes | malformed | stored | lost | duplicated | dead-lettered | duration |")
    tr.write_line("|---|---|---|---|---|---|---|")
    tr.write_line(
        f"| {sum(r.votes for r in REPORTS)} | {sum(r.malformed for r in REPORTS)} "
        f"| {sum(r.stored for r in REPORTS)} | {sum(r.lost for r in REPORTS)} "
        f"| {sum(r.duplicated for r in REPORTS)} | {sum(r.dead_lettered for r in REPORTS)} "
        f"| {sum(r.duration_s for r in REPORTS):.0f} s |"
    )
    tr.write_line("")
    tr.write_line("| fault | injected | not injected (no moment found) |")
    tr.write_line("|---|---|---|")
    skipped: Counter[str] = Counter()
    for r in REPORTS:
        skipped.update(r.skipped)
    for kind in FAULT_KINDS:
        tr.write_line(f"| {kind} | {total[kind]} | {skipped[kind]} |")
    details: Counter[str] = Counter()
    for r in REPORTS:
        details.update(r.details)
    for what, n in sorted(details.items()):
        tr.write_line(f"{what}: {n}")
