"""The race suite's own Redis and MariaDB, one run per seed, and a summary table at the end."""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.race.report import REPORTS, summary
from tests.race.settings import MAX_ALLOWED_PACKET
from tests.support.servers import MariaDBServer, OwnStores, RedisServer


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
    """A redis-server and a mariadbd of our own, which the faults may restart. The mariadbd
    refuses packets over MAX_ALLOWED_PACKET: the worker must size its batches to it."""
    if not (shutil.which("redis-server") and Path("/usr/sbin/mariadbd").exists()):
        pytest.skip("redis-server and mariadbd are needed to restart stores")
    root = Path(tempfile.mkdtemp(prefix="trio-worker-race-"))
    (root / "redis").mkdir()
    (root / "mysql").mkdir()
    mysql = MariaDBServer(
        "mariadb", root / "mysql", extra=[f"--max-allowed-packet={MAX_ALLOWED_PACKET}"]
    )
    stores = OwnStores(RedisServer("redis", root / "redis"), mysql)
    try:
        stores.mysql.install()
        stores.redis.start_blocking()
        stores.mysql.start_blocking()
        yield stores
    finally:
        stores.stop()
        shutil.rmtree(root, ignore_errors=True)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if REPORTS:
        terminalreporter.section("race runs")
        summary(REPORTS, terminalreporter.write_line)
