"""Fixtures: real Redis and MariaDB, one database and one key prefix per test.

Services are found in this order: environment variables (REDIS_HOST/REDIS_PORT,
MYSQL_HOST/MYSQL_PORT/MYSQL_USER/MYSQL_PASSWORD), then testcontainers when a Docker engine
answers, then the local defaults (127.0.0.1:6379, root@127.0.0.1:3306 with no password).
Tests talk to the stores with synchronous clients (redis-py, PyMySQL), so that what they check
never shares a code path with the worker under test.
"""

from __future__ import annotations

import os
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from typing import Any

import httpx
import pymysql
import pytest
import redis
import trio

from tests import leaks
from trio_worker import service
from trio_worker.config import Config, from_env

leaks.install()


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


@dataclass(frozen=True)
class Services:
    redis_host: str
    redis_port: int
    mysql_host: str
    mysql_port: int
    mysql_user: str
    mysql_password: str


def _docker_answers() -> bool:
    """Whether a Docker engine listens (the local socket, or a tcp:// DOCKER_HOST)."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        if host.startswith("unix://"):
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(2)
                sock.connect(host.removeprefix("unix://"))
        elif host.startswith("tcp://"):
            name, _, port = host.removeprefix("tcp://").partition(":")
            socket.create_connection((name, int(port or 2375)), timeout=2).close()
        else:
            return False
    except OSError:
        return False
    return True


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    env = os.environ
    if env.get("REDIS_HOST") or env.get("MYSQL_HOST"):
        yield Services(
            env.get("REDIS_HOST", "127.0.0.1"),
            int(env.get("REDIS_PORT", "6379")),
            env.get("MYSQL_HOST", "127.0.0.1"),
            int(env.get("MYSQL_PORT", "3306")),
            env.get("MYSQL_USER", "root"),
            env.get("MYSQL_PASSWORD", ""),
        )
        return
    if _docker_answers():
        from testcontainers.mysql import MySqlContainer
        from testcontainers.redis import RedisContainer

        with (
            RedisContainer("redis:7") as r,
            MySqlContainer("mariadb:10.11", username="root", password="test") as m,
        ):
            yield Services(
                r.get_container_host_ip(),
                int(r.get_exposed_port(6379)),
                m.get_container_host_ip(),
                int(m.get_exposed_port(3306)),
                "root",
                "test",
            )
        return
    yield Services("127.0.0.1", 6379, "127.0.0.1", 3306, "root", "")


def sql_connect(
    s: Services, database: str | None = None
) -> pymysql.connections.Connection[pymysql.cursors.Cursor]:
    return pymysql.connect(
        host=s.mysql_host,
        port=s.mysql_port,
        user=s.mysql_user,
        password=s.mysql_password,
        database=database,
        autocommit=True,
        charset="utf8mb4",
    )


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


def env_of(config: Config) -> dict[str, str]:
    """The environment that configures a worker subprocess like ``config``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "MYSQL_"))}
    env.update(
        {
            "REDIS_HOST": config.redis_host,
            "REDIS_PORT": str(config.redis_port),
            "MYSQL_HOST": config.mysql_host,
            "MYSQL_PORT": str(config.mysql_port),
            "MYSQL_USER": config.mysql_user,
            "MYSQL_PASSWORD": config.mysql_password,
            "MYSQL_DATABASE": config.mysql_database,
            "VOTE_QUEUE": config.vote_queue,
            "WORKER_ID": config.worker_id,
            "HOST": config.http_host,
            "PORT": str(config.http_port),
            "BATCH_SIZE": str(config.batch_size),
            "HEARTBEAT_TTL_S": str(config.heartbeat_ttl_s),
            "SHUTDOWN_TIMEOUT_S": str(config.shutdown_timeout_s),
            "QUEUE_CONSUME_FROM": config.consume_from,
            "FLUSH_INTERVAL_MS": str(config.flush_interval_s * 1000),
            "MAX_MESSAGE_BYTES": str(config.max_message_bytes),
            "LEDGER_RETENTION_S": str(config.ledger_retention_s),
            "MYSQL_READ_TIMEOUT_S": str(config.mysql_read_timeout_s),
            "LOG_FORMAT": "text",
            "PYTHONUNBUFFERED": "1",
        }
    )
    # The worker processes can be another build (e.g. the last release, to show that a
    # regression test fails there): TRIO_WORKER_UNDER_TEST=<a directory holding trio_worker/>.
    under_test = os.environ.get("TRIO_WORKER_UNDER_TEST")
    if under_test:
        env["PYTHONPATH"] = under_test
    return env


# -P: the package comes from the environment (or TRIO_WORKER_UNDER_TEST), not the current folder.
WORKER_CMD = [sys.executable, "-P", "-m", "trio_worker", "run"]


@dataclass
class RunningWorker:
    config: Config
    url: str
    stop: trio.Event
    exit_status: list[int]


@pytest.fixture
async def start_worker(nursery: trio.Nursery) -> AsyncIterator[object]:
    """Start the real service in this test's nursery: ``await start_worker(config)``."""
    running: list[RunningWorker] = []

    async def start(config: Config, *, ready: bool = True, **changes: Any) -> RunningWorker:
        """Start it; with ``ready``, return once ``/ready`` says 200 (the pipeline runs)."""
        cfg = replace(config, **changes) if changes else config
        stop = trio.Event()
        exit_status: list[int] = []

        async def main(
            *, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED
        ) -> None:
            exit_status.append(await service.run(cfg, stop=stop, task_status=task_status))

        binds = await nursery.start(main)
        url = binds[0].replace("0.0.0.0", "127.0.0.1")
        worker = RunningWorker(cfg, url, stop, exit_status)
        running.append(worker)
        if ready:
            await wait_ready(url)
        return worker

    yield start
    for worker in running:
        worker.stop.set()


async def wait_ready(url: str, timeout_s: float = 30.0) -> None:
    """Poll ``/ready`` until it says 200 (the service's own view: every connection is open)."""
    async with httpx.AsyncClient(timeout=5) as client:
        with trio.move_on_after(timeout_s):
            # Polling is the outside view a probe has; no event crosses the HTTP boundary.
            while (await client.get(url + "/ready")).status_code != 200:  # noqa: ASYNC110
                await trio.sleep(0.02)
            return
    pytest.fail(f"{url} not ready within {timeout_s}s")


async def wait_until(predicate: object, timeout_s: float = 30.0, what: str = "condition") -> None:
    """Poll ``predicate()`` every 20 ms until true; fail after ``timeout_s``."""
    assert callable(predicate)
    with trio.move_on_after(timeout_s):
        # Polling is the honest way here: the state lives in Redis and MySQL, not in an Event.
        while not predicate():  # noqa: ASYNC110
            await trio.sleep(0.02)
        return
    pytest.fail(f"timed out after {timeout_s}s waiting for {what}")
