"""How many connections one worker keeps, counted on the servers while it works: the figures
docs/operations.md ("Sizing the fleet") multiplies by KEDA's maximum. MySQL: the sessions of a
dedicated account on the shared MariaDB; Redis: the clients of a redis-server of the test's own.
"""

from __future__ import annotations

import signal
import uuid
from dataclasses import replace
from functools import partial
from pathlib import Path

import httpx
import pytest
import trio

from tests.support.http import wait_answering
from tests.support.servers import command, password_redis
from tests.support.stores import mysql_account, push_votes, sql, voter_counts
from tests.support.waiting import wait_until
from tests.support.workers import exit_status, worker_env, worker_process
from trio_worker.config import Config
from trio_worker.pipeline import FLUSHERS
from trio_worker.queue.client import MAX_CONNECTIONS

pytestmark = pytest.mark.slow

# The flushers' connections, the pruner's, and the /health probe's (which the store watch uses).
MYSQL_PER_WORKER = FLUSHERS + 2


def all_stored(config: Config, n: int) -> bool:
    return len(voter_counts(config)) == n


async def test_one_worker_keeps_five_mysql_connections_and_at_most_eight_to_redis(
    config: Config, tmp_path: Path
) -> None:
    password = f"pw-{uuid.uuid4().hex}"
    with (
        mysql_account(config, password) as user,
        password_redis(tmp_path / "redis", password) as server,
    ):
        cfg = replace(config, redis_host="127.0.0.1", redis_port=server.port)
        env, url = worker_env(
            cfg, MYSQL_USER=user, MYSQL_PASSWORD=password, REDIS_PASSWORD=password
        )
        ours = server.client()

        def mysql_sessions() -> int:
            rows = sql(
                config, f"SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = '{user}'"
            )
            return int(rows[0][0])

        def redis_clients() -> int:
            listed = command(ours, "CLIENT", "LIST", "TYPE", "normal").decode()
            return len(listed.splitlines()) - 1  # all but the test's own

        async with worker_process(env, tmp_path / "worker.log") as proc:
            await wait_answering(url)
            seen: list[int] = []
            sent = 0
            async with trio.open_nursery() as nursery:
                done = trio.Event()

                async def sample() -> None:
                    while not done.is_set():
                        seen.append(await trio.to_thread.run_sync(redis_clients))
                        await trio.sleep(0.05)

                nursery.start_soon(sample)
                for burst in range(5):
                    prefix = f"b{burst}-"
                    await trio.to_thread.run_sync(partial(push_votes, ours, cfg, 3000, prefix))
                    sent += 3000
                    async with httpx.AsyncClient(timeout=10) as client:
                        assert (await client.get(url + "/health")).status_code == 200
                    await wait_until(partial(all_stored, config, sent), what="the burst stored")
                done.set()
            seen_redis = max(seen)
            assert mysql_sessions() == MYSQL_PER_WORKER
            assert 0 < seen_redis <= MAX_CONNECTIONS + 1  # the pipeline's pool, /health's own
            proc.send_signal(signal.SIGTERM)
            assert await exit_status(proc, within_s=cfg.shutdown_timeout_s + 10) == 0
        ours.close()
    print(f"\nMySQL sessions: {MYSQL_PER_WORKER}; Redis clients at most {seen_redis}")
