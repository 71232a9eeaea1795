"""The shipped alert rules in a real Prometheus server, scraping a real worker process.

Prometheus (Debian's package) runs on a free loopback port with a storage directory of its own,
scrapes the worker every second and evaluates deploy/prometheus/alerts.yml every second, its
durations scaled from minutes to seconds (tests/deploy/prometheus_server.py; the expressions
are otherwise the shipped ones). MySQL is reached through a fault proxy of the test's own: the
shared MariaDB is never touched. Votes flow all along:

- healthy traffic: no alert is pending or firing;
- MySQL unreachable: ``TrioWorkerStoreDown{store="mysql"}`` and ``TrioWorkerStalled`` fire;
- MySQL back: every alert resolves, and every vote is stored exactly once.
"""

from __future__ import annotations

import signal
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import redis
import trio

from tests.deploy.common import ALERTS, load_yaml
from tests.deploy.prometheus_server import Prometheus, prometheus, scaled_rules
from tests.support.faults import mysql_proxy
from tests.support.http import wait_answering, wait_ready
from tests.support.servers import free_port
from tests.support.stores import push_votes, row_count, voter_counts
from tests.support.waiting import wait_until
from tests.support.workers import exit_status, worker_process
from trio_worker.config import Config

pytestmark = pytest.mark.slow

# Votes pushed every PUSH_EVERY_S while the test runs: "votes flowing".
PUSH_EVERY_S = 0.25
PUSH_N = 10
# How long healthy traffic is watched for a pending or firing alert: longer than every scaled
# `for` an alert on traffic could need (10 s) and every scaled window (15 s).
HEALTHY_S = 20.0
# Bounds (generous: a loaded machine) on Prometheus catching up after each change.
WARM_UP_S = 60.0
FIRE_WITHIN_S = 90.0
RESOLVE_WITHIN_S = 90.0


def active(rules: list[dict[str, Any]]) -> dict[str, list[dict[str, str]]]:
    """Alerts pending or firing, by rule: each alert's labels plus its state."""
    return {
        rule["name"]: [{**alert["labels"], "state": alert["state"]} for alert in rule["alerts"]]
        for rule in rules
        if rule["state"] != "inactive"
    }


def firing(rules: list[dict[str, Any]], name: str, **labels: str) -> bool:
    return any(
        alert["state"] == "firing" and labels.items() <= alert["labels"].items()
        for rule in rules
        if rule["name"] == name
        for alert in rule["alerts"]
    )


async def produce(rds: redis.Redis, config: Config, sent: list[str], stop: trio.Event) -> None:
    batch = 0
    while not stop.is_set():
        ids = await trio.to_thread.run_sync(
            partial(push_votes, rds, config, PUSH_N, prefix=f"p{batch}-")
        )
        sent.extend(ids)
        batch += 1
        with trio.move_on_after(PUSH_EVERY_S):
            await stop.wait()


async def wait_for_rules(
    server: Prometheus, what: str, within_s: float, predicate: Any
) -> tuple[list[dict[str, Any]], float]:
    """Poll the rules' states until ``predicate(rules)``; return them and how long it took."""
    started = trio.current_time()
    rules = await server.alert_rules()
    with trio.move_on_after(within_s):
        while not predicate(rules):
            await trio.sleep(0.25)
            rules = await server.alert_rules()
        return rules, trio.current_time() - started
    pytest.fail(f"{what} not within {within_s:g} s; active: {active(rules)}")


async def test_the_shipped_alerts_in_a_real_prometheus(
    config: Config, rds: redis.Redis, nursery: trio.Nursery, tmp_path: Path
) -> None:
    shipped = load_yaml(ALERTS)["groups"]
    names = {rule["alert"] for group in shipped for rule in group["rules"]}
    proxy, cfg = await mysql_proxy(nursery, config)
    cfg = replace(cfg, http_port=free_port(), http_host="127.0.0.1")
    url = f"http://127.0.0.1:{cfg.http_port}"
    sent: list[str] = []
    stop_producing = trio.Event()
    timings: dict[str, float] = {}
    async with worker_process(cfg, tmp_path / "worker.log") as proc:
        await wait_answering(url)
        await wait_ready(url)
        async with prometheus(
            tmp_path / "prometheus", scaled_rules(shipped), [f"127.0.0.1:{cfg.http_port}"]
        ) as server:
            assert {rule["name"] for rule in await server.alert_rules()} == names
            nursery.start_soon(produce, rds, config, sent, stop_producing)

            # Healthy: once Prometheus has scraped the worker, nothing is pending or firing.
            with trio.fail_after(WARM_UP_S):
                # Polling: Prometheus's view is only observable over its HTTP API.
                while not await server.query('worker_ready{job="trio-worker"} == 1'):  # noqa: ASYNC110
                    await trio.sleep(0.25)
            await wait_for_rules(server, "no alert active", WARM_UP_S, lambda r: not active(r))
            healthy_until = trio.current_time() + HEALTHY_S
            while trio.current_time() < healthy_until:
                rules = await server.alert_rules()
                assert active(rules) == {}, "an alert on healthy traffic"
                await trio.sleep(0.25)
            assert sent
            assert row_count(config) > 0

            # MySQL unreachable (every connection cut, new ones refused), votes still coming.
            proxy.refuse = True
            proxy.cut_all()
            cut_at = trio.current_time()
            wanted = {"TrioWorkerStoreDown": {"store": "mysql"}, "TrioWorkerStalled": {}}
            seen: dict[str, float] = {}

            def both_fire(rules: list[dict[str, Any]]) -> bool:
                for name, labels in wanted.items():
                    if name not in seen and firing(rules, name, **labels):
                        seen[name] = trio.current_time() - cut_at
                return len(seen) == len(wanted)

            rules, _ = await wait_for_rules(server, "the outage's alerts", FIRE_WITHIN_S, both_fire)
            outage = active(rules)
            store_down = outage["TrioWorkerStoreDown"]
            assert {a["store"] for a in store_down if a["state"] == "firing"} == {"mysql"}
            timings.update({f"{name} firing": took for name, took in seen.items()})

            # MySQL back: every alert resolves, every vote is stored once.
            proxy.refuse = False
            back_at = trio.current_time()
            await trio.sleep(2 * PUSH_EVERY_S)
            stop_producing.set()
            await wait_for_rules(
                server, "every alert resolved", RESOLVE_WITHIN_S, lambda r: not active(r)
            )
            timings["all resolved after MySQL came back"] = trio.current_time() - back_at
            await wait_until(lambda: row_count(config) == len(sent), what="every vote stored")
            assert voter_counts(config) == dict.fromkeys(sent, 1)
            assert rds.llen(config.vote_queue) == 0
            print(f"\noutage alerts: {sorted(outage)}")
            for what, seconds in timings.items():
                print(f"{what}: {seconds:.1f} s")
        proc.send_signal(signal.SIGTERM)
        assert await exit_status(proc, within_s=cfg.shutdown_timeout_s + 10) == 0
