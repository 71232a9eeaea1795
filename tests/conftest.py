"""Fixtures: real Redis and MariaDB (``tests.support.services`` says how they are found), one
database and one key prefix per test; the real service started in the test's own Trio run."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis
import trio

from tests.support import leaks
from tests.support.http import wait_ready
from tests.support.services import Services, found_services, sql_connect
from tests.support.workers import RunningWorker, start_service
from trio_worker.config import Config, from_env


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("race", "the race suite (tests/race): faults, concurrency, bad input")
    group.addoption(
        "--stress-seed", type=int, default=None, help="replay the race run with this seed"
    )
    group.addoption(
        "--stress-seeds", type=int, default=1, help="how many race runs, each its own seed"
    )
    group.addoption(
        "--stress-duration",
        type=float,
        default=12.0,
        help="seconds of load and faults per race run (the smoke default is short)",
    )


def pytest_configure(config: pytest.Config) -> None:
    leaks.install()


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    with found_services() as found:
        yield found


@pytest.fixture
def config(services: Services) -> Iterator[Config]:
    """A configuration of our own: queue ``t<hex>`` and database ``tw_<hex>``, removed after."""
    tag = uuid.uuid4().hex[:12]
    base = from_env(
        {
            "REDIS_HOST": services.redis_host,
            "REDIS_PORT": str(services.redis_port),
            "MYSQL_HOST": services.mysql_host,
            "MYSQL_PORT": str(services.mysql_port),
            "MYSQL_USER": services.mysql_user,
            "MYSQL_PASSWORD": services.mysql_password,
            "MYSQL_DATABASE": f"tw_{tag}",
            "VOTE_QUEUE": f"t{tag}",
            "HOST": "127.0.0.1",
            "PORT": "0",
            "WORKER_ID": f"test-{tag}",
            "LOG_FORMAT": "text",
        }
    )
    yield base
    r = redis.Redis(host=services.redis_host, port=services.redis_port)
    keys = list(r.scan_iter(match=f"{base.vote_queue}*", count=1000))
    if keys:
        r.delete(*keys)
    r.close()
    with sql_connect(services) as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{base.mysql_database}`")


@pytest.fixture
def rds(services: Services) -> Iterator[redis.Redis]:
    client = redis.Redis(host=services.redis_host, port=services.redis_port)
    yield client
    client.close()


@pytest.fixture
async def start_worker(nursery: trio.Nursery) -> AsyncIterator[object]:
    """Start the real service in this test's nursery: ``await start_worker(config)``; with
    ``ready`` (the default), it returns once ``/ready`` says 200 (the pipeline runs). Every
    worker started is stopped (drained) at the end of the test."""
    running: list[RunningWorker] = []

    async def start(config: Config, *, ready: bool = True, **changes: Any) -> RunningWorker:
        worker = await start_service(nursery, config, **changes)
        running.append(worker)
        if ready:
            await wait_ready(worker.url)
        return worker

    yield start
    for worker in running:
        worker.stop.set()
