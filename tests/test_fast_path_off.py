"""The worker without trio-asyncio's fast path: turned off (``TRIO_ASYNCIO_FAST_PATH=false``), or
on a trio-asyncio release it was not verified on. Either way the stock loop runs, one log line
says why, and the worker does its whole job: 100,000 votes, each stored once, a clean drain.

The unverified release is made by a ``sitecustomize`` on the worker's path that changes
``trio_asyncio.__version__`` before the worker starts: the installed code is the same, only
the release it says it is differs, as after an upgrade.
"""

from __future__ import annotations

import signal
from dataclasses import replace
from pathlib import Path

import pytest
import redis

from tests.support.servers import free_port
from tests.support.stores import push_votes, row_count, voter_counts
from tests.support.waiting import wait_until
from tests.support.workers import env_of, exit_status, worker_process
from trio_worker.config import Config

pytestmark = pytest.mark.slow

VOTES = 100_000
UNVERIFIED = """\
import trio_asyncio

trio_asyncio.__version__ = "0.99.0"
"""


@pytest.mark.parametrize("why", ["turned-off", "unverified-release"])
async def test_the_stock_loop_stores_every_vote_once_and_says_why_once(
    config: Config, rds: redis.Redis, tmp_path: Path, why: str
) -> None:
    cfg = replace(config, http_port=free_port())
    env = env_of(cfg)
    if why == "turned-off":
        env["TRIO_ASYNCIO_FAST_PATH"] = "false"
        expected = "TRIO_ASYNCIO_FAST_PATH=false"
    else:
        (tmp_path / "sitecustomize.py").write_text(UNVERIFIED)
        env["PYTHONPATH"] = (
            f"{tmp_path}:{env['PYTHONPATH']}" if "PYTHONPATH" in env else str(tmp_path)
        )
        expected = "trio-asyncio 0.99.0 is not a release it was verified on"
    log = tmp_path / "worker.log"
    ids = push_votes(rds, config, VOTES)
    async with worker_process(env, log) as proc:
        await wait_until(lambda: row_count(config) == VOTES, timeout_s=120, what="every vote")
        proc.send_signal(signal.SIGTERM)
        assert await exit_status(proc, within_s=cfg.shutdown_timeout_s + 5) == 0
    assert voter_counts(config) == dict.fromkeys(ids, 1)
    said = [line for line in log.read_text().splitlines() if "fast path off" in line]
    assert len(said) == 1, said
    assert expected in said[0]
