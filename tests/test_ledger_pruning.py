"""The running worker prunes its ledger: rows older than LEDGER_RETENTION_S go (never younger
ones), and pruning runs at least every tenth of the retention, idle or not.

With the least retention accepted (30 s), a row committed 2 minutes ago must be gone within a
tenth of it (3 s), plus slack for a loaded machine; a fresh row stays, and so does a row 15 s
old, as long as it is younger than the retention (checked against the server's clock)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from tests.support.stores import sql
from tests.support.waiting import wait_until
from trio_worker.config import Config

RETENTION_S = 30
PRUNE_EVERY_S = RETENTION_S / 10  # the contract's "at least every tenth of the retention"
SLACK_S = 5.0


def insert(config: Config, batch_id: str, age_s: int) -> datetime:
    """A ledger row committed ``age_s`` ago by the server's clock; its committed_at."""
    sql(
        config,
        "INSERT INTO vote_batches (batch_id, votes, committed_at) "
        f"VALUES ('{batch_id}', 1, NOW() - INTERVAL {age_s} SECOND)",
    )
    stamp = sql(config, f"SELECT committed_at FROM vote_batches WHERE batch_id = '{batch_id}'")
    committed_at: datetime = stamp[0][0]
    return committed_at


def present(config: Config, batch_id: str) -> bool:
    return bool(sql(config, f"SELECT 1 FROM vote_batches WHERE batch_id = '{batch_id}'"))


def age_now(config: Config, committed_at: datetime) -> float:
    now = sql(config, "SELECT NOW()")[0][0]
    return float((now - committed_at).total_seconds())


def kept_while_young(config: Config, batch_id: str, committed_at: datetime) -> None:
    """Present, unless it has reached the retention meanwhile (then pruning it is allowed)."""
    if not present(config, batch_id):
        age = age_now(config, committed_at)
        assert age >= RETENTION_S, f"{batch_id} pruned at {age:.0f}s, younger than {RETENTION_S}s"


@pytest.mark.slow
async def test_the_running_worker_prunes_rows_older_than_the_retention_and_only_those(
    config: Config, start_worker: Any
) -> None:
    await start_worker(config, ledger_retention_s=RETENTION_S)  # ready: the ledger exists
    insert(config, "old-1", 120)
    fresh = insert(config, "fresh", 0)
    young = insert(config, "young", 15)
    await wait_until(
        lambda: not present(config, "old-1"),
        timeout_s=PRUNE_EVERY_S + SLACK_S,
        what="the 2-minute-old ledger row to be pruned",
    )
    kept_while_young(config, "fresh", fresh)
    kept_while_young(config, "young", young)
    # A second pass, by the same condition: the rows it must keep are still kept.
    insert(config, "old-2", 120)
    await wait_until(
        lambda: not present(config, "old-2"),
        timeout_s=PRUNE_EVERY_S + SLACK_S,
        what="a second prune pass",
    )
    kept_while_young(config, "fresh", fresh)
    kept_while_young(config, "young", young)
    assert present(config, "fresh")
