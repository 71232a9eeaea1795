"""A step of the worker host's wall clock, forward then back, mid-drain (NTP, a VM resumed).

The worker runs under libfaketime (Debian's ``faketime``), its wall clock offset by what a file
says, re-read every second; its monotonic clocks are left alone, as a real step leaves them.
Before, batch times were this host's clock plus an offset learned only at connect: +400 s made
every new batch look stale (dead-lettered as ``stale_batch``) until a connection reopened, and
-400 s stored votes without a timestamp 400 s in the past. Now: no ``stale_batch`` letter,
every vote stored once, and a vote without a timestamp within 10 s of the server's own time
(``created_at``, the server's CURRENT_TIMESTAMP at insert).
"""

from __future__ import annotations

import glob
import shutil
import signal
from dataclasses import replace
from pathlib import Path

import pytest
import redis
import trio

from tests.support.servers import free_port
from tests.support.stores import push_votes, row_count, sql, voter_counts
from tests.support.waiting import wait_until
from tests.support.workers import env_of, exit_status, worker_process
from trio_worker.config import Config

pytestmark = pytest.mark.slow

STEP_S = 400  # past the ledger's skew allowance (300 s at the default retention)


def libfaketime() -> str:
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
    found += sorted(glob.glob("/usr/lib/faketime/libfaketime.so.1"))
    if not found or shutil.which("faketime") is None:
        pytest.skip("libfaketime missing (Debian package faketime; .ci/run installs it)")
    return found[0]


def faked(offset_file: Path) -> dict[str, str]:
    """The environment that runs a process under libfaketime, its wall clock offset by what
    ``offset_file`` says ("+400s"), re-read every second. Monotonic clocks are not faked (a
    real step leaves them alone), which makes libfaketime 0.9.10 fail time.sleep with EINVAL:
    the worker never calls it (Trio waits in its own way)."""
    return {
        "LD_PRELOAD": libfaketime(),
        "FAKETIME_TIMESTAMP_FILE": str(offset_file),
        "FAKETIME_CACHE_DURATION": "1",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }


def done(rds: redis.Redis, config: Config) -> int:
    """Votes stored or dead-lettered."""
    return row_count(config) + int(rds.llen(config.dead_letter_queue))


async def test_a_wall_clock_step_neither_quarantines_fresh_votes_nor_misdates_them(
    config: Config, rds: redis.Redis, tmp_path: Path
) -> None:
    offset = tmp_path / "offset"
    offset.write_text("+0s\n")
    cfg = replace(config, http_port=free_port(), batch_size=100)
    ids: list[str] = []
    async with worker_process({**env_of(cfg), **faked(offset)}, tmp_path / "worker.log") as proc:
        for step, prefix in ((f"+{STEP_S}s", "f"), (f"-{STEP_S}s", "b"), ("+0s", "z")):
            ids += push_votes(rds, config, 10_000, prefix=f"{prefix}-")
            handled = done(rds, config)
            await wait_until(lambda: done(rds, config) > handled, what="the drain under way")  # noqa: B023
            offset.write_text(f"{step}\n")  # the worker's clock steps, mid-drain
            await trio.sleep(2.5)  # libfaketime reads the file again within a second
            ids += push_votes(rds, config, 10_000, prefix=f"{prefix}-after-")
        await wait_until(lambda: done(rds, config) >= len(ids), timeout_s=60, what="every vote")
        proc.send_signal(signal.SIGTERM)
        assert await exit_status(proc, within_s=cfg.shutdown_timeout_s + 5) == 0
    letters = rds.lrange(config.dead_letter_queue, 0, -1)
    assert letters == [], f"{len(letters)} dead letters, e.g. {letters[:1]}"
    assert voter_counts(config) == dict.fromkeys(ids, 1)
    (worst,) = sql(
        config, "SELECT MAX(ABS(TIMESTAMPDIFF(SECOND, timestamp, created_at))) FROM votes"
    )
    assert worst[0] <= 10, f"a vote without a timestamp is {worst[0]} s off the server's time"
