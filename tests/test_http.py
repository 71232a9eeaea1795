"""/health and /ready at the edges of the contract: a store down or hung, a start that can't
finish, a drain under way. Real stores, the real service, MySQL behind a fault proxy."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import redis
import trio

from tests.support.faults import mysql_proxy, stall_with_a_batch_in_flight
from tests.support.stores import push_votes, row_count, voter_counts
from tests.support.waiting import wait_until
from trio_worker.config import Config

# README: /health answers once both stores answer "a live check (2 s each)"; a hung store is
# reported down after that, never waited for.
PROBE_TIMEOUT_S = 2.0
# What an answer may take beyond the probe itself (HTTP, the other probe, a loaded machine).
HTTP_SLACK_S = 1.0


async def timed_get(url: str) -> tuple[httpx.Response, float]:
    """GET with a client timeout well past the bound, so that a hang shows as a slow answer."""
    async with httpx.AsyncClient(timeout=PROBE_TIMEOUT_S * 10) as client:
        started = trio.current_time()
        response = await client.get(url)
        return response, trio.current_time() - started


async def ready_body(url: str) -> tuple[int, dict[str, Any]]:
    response, _ = await timed_get(url + "/ready")
    return response.status_code, response.json()


@pytest.mark.parametrize("fault", [pytest.param("hung", marks=pytest.mark.slow), "down"])
async def test_health_says_503_within_the_probe_timeout_when_mysql_hangs_or_is_down(
    config: Config, start_worker: Any, nursery: trio.Nursery, fault: str
) -> None:
    """``hung``: a black-holed network (no FIN, no RST: the probe's query never returns);
    ``down``: every connection closed at once."""
    proxy, cfg = await mysql_proxy(nursery, config)
    worker = await start_worker(cfg)
    healthy, _ = await timed_get(worker.url + "/health")
    assert healthy.status_code == 200
    if fault == "hung":
        proxy.set_blackhole(True)
    else:
        proxy.refuse = True
        proxy.cut_all()
    for _ in range(2):  # the second finds the probe connection given up by the first
        health, took = await timed_get(worker.url + "/health")
        assert health.status_code == 503
        body = health.json()
        assert (body["status"], body["redis"], body["database"]) == (
            "unhealthy",
            "connected",
            "disconnected",
        )
        assert took <= PROBE_TIMEOUT_S + HTTP_SLACK_S, f"/health took {took:.1f}s"
    proxy.set_blackhole(False)
    proxy.refuse = False
    with trio.move_on_after(30):
        while (await timed_get(worker.url + "/health"))[0].status_code != 200:  # noqa: ASYNC110
            await trio.sleep(0.1)
    assert (await timed_get(worker.url + "/health"))[0].status_code == 200


async def test_concurrent_health_checks_each_answer_within_the_probe_timeout_when_mysql_hangs(
    config: Config, start_worker: Any, nursery: trio.Nursery
) -> None:
    """Probes come together (an orchestrator, a load balancer, a person with curl): each must
    answer within the bound, not queue behind the others' hung checks."""
    proxy, cfg = await mysql_proxy(nursery, config)
    worker = await start_worker(cfg)
    proxy.set_blackhole(True)
    answers: list[tuple[int, float]] = []

    async def probe() -> None:
        response, took = await timed_get(worker.url + "/health")
        answers.append((response.status_code, took))

    async with trio.open_nursery() as probes:
        for _ in range(3):
            probes.start_soon(probe)
    assert [status for status, _ in answers] == [503, 503, 503]
    slowest = max(took for _, took in answers)
    assert slowest <= PROBE_TIMEOUT_S + HTTP_SLACK_S, f"answers took {sorted(answers)}"
    proxy.set_blackhole(False)


@pytest.mark.parametrize("store", ["redis", "mysql"])
async def test_ready_says_503_while_starting_with_a_store_unreachable(
    config: Config, start_worker: Any, store: str
) -> None:
    # Nothing listens on port 1: the start can't finish.
    worker = await start_worker(config, ready=False, **{f"{store}_port": 1})
    for _ in range(3):  # the start keeps retrying; the answer stays the same
        status, body = await ready_body(worker.url)
        assert (status, body["ready"], body["phase"]) == (503, False, "starting")
        await trio.sleep(0.3)
    assert worker.exit_status == []


async def test_ready_says_503_while_draining_then_the_drain_ends_with_exit_0(
    config: Config, rds: redis.Redis, start_worker: Any, nursery: trio.Nursery
) -> None:
    proxy, cfg = await mysql_proxy(nursery, config, stall=True, batch_size=200)
    ids = push_votes(rds, config, 3000)
    worker = await start_worker(cfg)
    assert (await ready_body(worker.url))[0] == 200
    # A batch held in flight, MySQL black-holed: the drain can't finish until it comes back.
    await stall_with_a_batch_in_flight(proxy, rds, config)
    worker.stop.set()
    for _ in range(3):
        status, body = await ready_body(worker.url)
        assert (status, body["ready"], body["phase"]) == (503, False, "draining")
        await trio.sleep(0.2)
    assert worker.exit_status == []
    proxy.set_blackhole(False)
    await wait_until(lambda: worker.exit_status, what="the drain to end")
    assert worker.exit_status == [0]
    stored = voter_counts(config)
    assert all(n == 1 for n in stored.values())
    assert set(stored) <= set(ids)
    assert row_count(config) + rds.llen(config.vote_queue) == len(ids)
