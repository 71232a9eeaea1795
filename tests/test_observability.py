"""What the worker says about itself: its version (one source, the package metadata) in
``--version``, ``/health``, the start-up log line and ``trio_worker_build_info``; whether each
store answers (``trio_worker_store_up``, from the health state the pipeline itself uses, kept
current by the store watch while the pipeline is idle); the standard ``process_*`` metrics."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import trio
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families

import trio_worker
from tests.support.faults import mysql_proxy
from tests.support.stores import push_votes, row_count, voter_counts
from tests.support.waiting import wait_until
from trio_worker import watch
from trio_worker.config import Config
from trio_worker.errors import MySQLUnavailable, RedisUnavailable, StoreUnavailable
from trio_worker.http import PROBE_TIMEOUT_S
from trio_worker.retry import Backoff, StoreHealth
from trio_worker.status import Status

ROOT = Path(__file__).resolve().parents[1]
# Slack for a loaded machine beyond the bounds the worker's own constants give.
SLACK_S = 10.0


def package_version() -> str:
    return importlib.metadata.version("trio-worker")


async def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with httpx.AsyncClient(timeout=10) as client:
        text = (await client.get(url + "/metrics")).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def store_up(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], store: str) -> float:
    return samples[("trio_worker_store_up", (("store", store),))]


def test_the_version_is_declared_once_in_pyproject() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert package_version() == declared
    assert not hasattr(trio_worker, "__version__")
    for path in (ROOT / "trio_worker").rglob("*.py"):
        assert f'"{declared}"' not in path.read_text(), f"{path} declares the version again"


def test_version_option_prints_the_package_version() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "trio_worker", "--version"],
        env={"PATH": "/usr/bin:/bin"},  # no configuration needed, and none read
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert (done.returncode, done.stdout) == (0, f"trio-worker {package_version()}\n")


async def test_health_metrics_and_the_start_up_log_agree_on_the_version(
    config: Config, start_worker: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="trio_worker.service")
    worker = await start_worker(config)
    async with httpx.AsyncClient(timeout=10) as client:
        health = (await client.get(worker.url + "/health")).json()
    samples = await scrape(worker.url)
    version = package_version()
    assert health["version"] == version
    assert samples[("trio_worker_build_info", (("version", version),))] == 1
    assert [s for s in samples if s[0] == "trio_worker_build_info"] == [
        ("trio_worker_build_info", (("version", version),))
    ]
    starting = [r for r in caplog.records if r.getMessage() == "starting"]
    assert [getattr(r, "version", None) for r in starting] == [version]
    # The standard collectors a default registry would have: memory, CPU, open files, Python.
    names = {name for name, _ in samples}
    assert {
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
        "process_max_fds",
        "python_info",
    } <= names
    assert store_up(samples, "redis") == store_up(samples, "mysql") == 1


async def test_store_up_falls_within_seconds_of_a_failure_with_votes_flowing(
    config: Config, rds: redis.Redis, start_worker: Any, nursery: trio.Nursery
) -> None:
    proxy, cfg = await mysql_proxy(nursery, config)
    worker = await start_worker(cfg)
    ids = push_votes(rds, cfg, 50)
    await wait_until(lambda: row_count(config) == 50, what="50 rows")
    proxy.refuse = True
    proxy.cut_all()
    ids += push_votes(rds, cfg, 50, prefix="w")
    failed_at = trio.current_time()
    with trio.fail_after(PROBE_TIMEOUT_S + SLACK_S):
        while store_up(await scrape(worker.url), "mysql") != 0:  # noqa: ASYNC110 (HTTP)
            await trio.sleep(0.1)
    took = trio.current_time() - failed_at
    assert store_up(await scrape(worker.url), "redis") == 1
    proxy.refuse = False
    with trio.fail_after(Backoff.cap_s + SLACK_S):
        while store_up(await scrape(worker.url), "mysql") != 1:  # noqa: ASYNC110 (HTTP)
            await trio.sleep(0.1)
    await wait_until(lambda: row_count(config) == 100, what="100 rows")
    assert voter_counts(config) == dict.fromkeys(ids, 1)
    print(f"store_up{{mysql}} 0 after {took:.2f} s with votes flowing")


async def test_store_up_falls_within_seconds_of_a_failure_while_idle(
    config: Config, start_worker: Any, nursery: trio.Nursery
) -> None:
    """No vote comes: nothing in the pipeline uses MySQL, and the store watch asks it."""
    proxy, cfg = await mysql_proxy(nursery, config)
    worker = await start_worker(cfg)
    proxy.refuse = True
    proxy.cut_all()
    failed_at = trio.current_time()
    bound = watch.QUIET_S + watch.PERIOD_S + PROBE_TIMEOUT_S + SLACK_S
    with trio.fail_after(bound):
        while store_up(await scrape(worker.url), "mysql") != 0:  # noqa: ASYNC110 (HTTP)
            await trio.sleep(0.2)
    took = trio.current_time() - failed_at
    async with httpx.AsyncClient(timeout=10) as client:
        assert (await client.get(worker.url + "/ready")).status_code == 503
    proxy.refuse = False
    with trio.fail_after(bound):
        while store_up(await scrape(worker.url), "mysql") != 1:  # noqa: ASYNC110 (HTTP)
            await trio.sleep(0.2)
    print(f"store_up{{mysql}} 0 after {took:.2f} s while idle")


# --- the store watch, on virtual time ------------------------------------------------------------


class FakeProbes:
    """Answers as told, counting the questions."""

    def __init__(self) -> None:
        self.mysql_error: StoreUnavailable | None = None
        self.asked: list[tuple[str, float]] = []

    async def mysql_failure(self) -> StoreUnavailable | None:
        self.asked.append(("mysql", trio.current_time()))
        return self.mysql_error

    async def redis_failure(self) -> StoreUnavailable | None:
        self.asked.append(("redis", trio.current_time()))
        return None


def fake_status() -> Status:
    registry = CollectorRegistry()
    return Status(
        StoreHealth("redis", RedisUnavailable, Counter("r", "r", registry=registry)),
        StoreHealth("mysql", MySQLUnavailable, Counter("m", "m", registry=registry)),
    )


def test_the_watch_waits_longer_than_any_retry_backoff() -> None:
    assert Backoff.cap_s < watch.QUIET_S


async def test_the_watch_asks_only_a_store_nobody_has_reported_on(
    autojump_clock: trio.abc.Clock,
) -> None:
    status, probes = fake_status(), FakeProbes()
    done = trio.Event()
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        await nursery.start(watch.StoreWatch(status, probes).run, done)  # type: ignore[arg-type]

        async def redis_reported_every_second() -> None:
            while not done.is_set():
                status.redis.succeeded()
                await trio.sleep(1)

        nursery.start_soon(redis_reported_every_second)
        # A quiet MySQL is asked at the first look; it answers: up.
        await trio.sleep(watch.PERIOD_S + 0.5)
        assert probes.asked == [("mysql", start + watch.PERIOD_S)]
        assert status.mysql.ok is True
        # It fails; the next question comes once it has been quiet for QUIET_S again.
        probes.mysql_error = MySQLUnavailable("db:3306", "connection refused")
        await trio.sleep(watch.QUIET_S + watch.PERIOD_S)
        assert [who for who, _ in probes.asked] == ["mysql", "mysql"]
        assert probes.asked[1][1] - probes.asked[0][1] >= watch.QUIET_S
        assert status.mysql.ok is False
        # A task reporting on MySQL keeps the watch from asking at all.
        asked = len(probes.asked)
        for _ in range(10):
            status.mysql.succeeded()
            await trio.sleep(watch.QUIET_S / 2)
        assert len(probes.asked) == asked
        done.set()
    assert all(who == "mysql" for who, _ in probes.asked)  # Redis reported itself all along
