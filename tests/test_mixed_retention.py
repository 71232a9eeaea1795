"""Workers on one queue with different LEDGER_RETENTION_S (a rolling config change).

A long-retention worker commits a batch whose COMMIT reply is lost (its connection frozen),
while a worker with a 30 s retention prunes the ledger every 3 s. The batch's ledger row grows
older than 30 s before the first worker gives up on its connection and commits the batch again:
the row must still be there to say "committed already" (the pruner spares rows of batches whose
in-flight list is still registered, whoever prunes), or the batch would be stored twice. Each
worker also says, once, that a live worker on its queue has another retention.
"""

from __future__ import annotations

import signal
from dataclasses import replace
from pathlib import Path

import pytest
import redis
import trio

from tests.support.faults import FaultProxy
from tests.support.servers import free_port
from tests.support.stores import push_votes, row_count, voter_counts
from tests.support.waiting import wait_until
from tests.support.workers import exit_status, worker_process
from trio_worker.config import Config

pytestmark = pytest.mark.slow

SHORT_S = 30


async def test_a_short_retention_never_prunes_a_row_a_long_one_still_relies_on(
    config: Config, rds: redis.Redis, tmp_path: Path, nursery: trio.Nursery
) -> None:
    proxy = FaultProxy(config.mysql_host, config.mysql_port)
    port = await nursery.start(proxy.serve)
    long = replace(
        config,
        mysql_host="127.0.0.1",
        mysql_port=port,
        mysql_read_timeout_s=SHORT_S + 15,  # gives up on the frozen COMMIT after the prunes
        worker_id=f"{config.worker_id}-long",
        http_port=free_port(),
        batch_size=100,
    )
    short = replace(
        config,
        ledger_retention_s=SHORT_S,
        worker_id=f"{config.worker_id}-short",
        http_port=free_port(),
        batch_size=100,
    )
    proxy.hold_reply_after(b"INSERT INTO vote_batches")  # committed; the reply never comes
    long_log, short_log = tmp_path / "long.log", tmp_path / "short.log"
    async with worker_process(long, long_log) as long_proc:
        ids = push_votes(rds, config, 100, prefix="held-")
        with trio.fail_after(30):
            await proxy.holding.wait()
        await wait_until(lambda: row_count(config) == 100, what="the held batch committed")
        async with worker_process(short, short_log) as short_proc:
            # The short worker's own batches age past its retention and are pruned, and so
            # would the held batch's row be, if the pruner did not spare it.
            ids += push_votes(rds, config, 500, prefix="short-")
            await wait_until(lambda: row_count(config) == 600, what="the short worker's votes")
            await wait_until(
                lambda: "pruned ledger" in short_log.read_text(),
                timeout_s=SHORT_S + 20,
                what="a prune pass past the retention",
            )
            # The long worker gives up on its frozen connection and commits the batch again:
            # its in-flight list goes once that attempt learns the batch was committed.
            await wait_until(
                lambda: not inflight(rds, config),
                timeout_s=long.mysql_read_timeout_s + 60,
                what="the held batch's retry",
            )
            for proc, cfg in ((short_proc, short), (long_proc, long)):
                proc.send_signal(signal.SIGTERM)
                assert await exit_status(proc, within_s=cfg.shutdown_timeout_s + 5) == 0
    proxy.release()
    assert voter_counts(config) == dict.fromkeys(ids, 1)
    for log in (long_log, short_log):
        said = [
            line for line in log.read_text().splitlines() if "differ in LEDGER_RETENTION_S" in line
        ]
        assert len(said) == 1, log.read_text()[-2000:]


def inflight(rds: redis.Redis, config: Config) -> int:
    return int(rds.scard(f"{config.vote_queue}:inflight"))
