"""A Redis that answers but refuses writes, and a Redis too old for the worker.

``min-replicas-to-write 1`` with no replica (NOREPLICAS) and ``maxmemory`` below what the data
set uses, with ``noeviction`` (OOM), mid-drain, on Redis 7.0 and on 6.2, where an error inside a
script arrives wrapped ("Error running script ...: -OOM ..."). Throughout: the same process,
``/live`` 200, ``/ready`` 503 naming Redis within 15 s and staying so while writes are refused
(reads still succeed, and must not make Redis look healthy), no traceback, a quiet log and an
idle process (a retry loop that spun would show in both); after the revert every vote is
stored exactly once. On Redis 5.0 the worker says, once, which version it needs.

The worker runs as a process of its own (its PID, CPU time and log are what is judged); Redis
is a private server; MySQL is the shared one, in a database of the test's own.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import trio

from tests.support.figures import FIGURES
from tests.support.http import answer, wait_ready
from tests.support.old_redis import binary
from tests.support.servers import RedisServer, free_port, need, start_or_fail
from tests.support.services import Services, sql_connect
from tests.support.stores import push, stored
from tests.support.waiting import wait_until
from tests.support.workers import tagged_env, worker_process

TOTAL = 20_000
FAULT_S = 20.0  # how long each fault lasts
READY_WITHIN_S = 15.0
MAX_LOG_LINES = 100
MAX_CPU_SHARE = 0.12  # of one core, while writes are refused (3 s of CPU in 25 s)


def _redis_binary(version: str) -> str:
    if version == "7":
        need("redis-server")
        return "redis-server"
    found = binary(version)
    if found is None:
        pytest.skip(
            f"no Redis {version} here: `just old-redis` builds it (tests/support/old_redis.py)"
        )
    return str(found)


@pytest.fixture
def server(request: pytest.FixtureRequest, short_dir: Path, tag: str) -> Iterator[RedisServer]:
    version: str = request.param
    directory = short_dir / f"refuse-{tag}"
    directory.mkdir()
    srv = RedisServer(
        "redis", directory, binary=_redis_binary(version), protocol=2 if version < "6" else 3
    )
    start_or_fail(srv, f"Redis {version}")
    try:
        yield srv
    finally:
        srv.stop()


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Worker:
    """The worker process, its log and its base URL."""

    proc: trio.Process
    log: Path
    url: str

    def lines(self) -> list[str]:
        return self.log.read_text(errors="replace").splitlines()


@asynccontextmanager
async def running(env: dict[str, str], log: Path) -> AsyncIterator[Worker]:
    """The worker as a process on a port of its own; SIGTERM on the way out (killed if it doesn't
    drain in 30 s)."""
    port = free_port()
    async with worker_process({**env, "PORT": str(port)}, log, drain_s=30) as proc:
        yield Worker(proc, log, f"http://127.0.0.1:{port}")


def _env(server: RedisServer, mysql: dict[str, str], tag: str, **extra: str) -> dict[str, str]:
    return {
        **tagged_env(tag, **extra),
        **mysql,
        "REDIS_HOST": "127.0.0.1",
        "REDIS_PORT": str(server.port),
    }


async def _status(client: httpx.AsyncClient, url: str) -> tuple[int, dict[str, object]]:
    response = await client.get(url)
    return response.status_code, response.json()


async def _refuse_writes(
    srv: RedisServer, worker: Worker, fault: str, client: httpx.AsyncClient
) -> dict[str, float]:
    """Refuse writes for ``FAULT_S`` and judge the worker meanwhile; then revert."""
    admin = srv.client()
    lines_before = len(worker.lines())
    cpu_before, started = _cpu_s(worker.proc.pid), time.monotonic()
    if fault == "noreplicas":
        admin.config_set("min-replicas-to-write", 1)
    else:
        used = int(admin.info("memory")["used_memory"])
        admin.config_set("maxmemory-policy", "noeviction")
        admin.config_set("maxmemory", max(used // 2, 1))
    not_ready_after: float | None = None
    while time.monotonic() - started < FAULT_S:
        ready, body = await _status(client, worker.url + "/ready")
        live, _ = await _status(client, worker.url + "/live")
        assert live == 200, "a store outage must never fail /live"
        elapsed = time.monotonic() - started
        if ready == 503 and body.get("redis") is False and not_ready_after is None:
            not_ready_after = elapsed
        elif not_ready_after is not None:
            assert ready == 503, f"/ready said {ready} at {elapsed:.1f} s while writes were refused"
        await trio.sleep(0.2)
    cpu = _cpu_s(worker.proc.pid) - cpu_before
    lines = len(worker.lines()) - lines_before
    if fault == "noreplicas":
        admin.config_set("min-replicas-to-write", 0)
    else:
        admin.config_set("maxmemory", 0)
    admin.close()
    assert not_ready_after is not None, f"/ready never said 503 in {FAULT_S:g} s"
    assert not_ready_after <= READY_WITHIN_S, not_ready_after
    assert lines <= MAX_LOG_LINES, f"{lines} log lines in {FAULT_S:g} s"
    assert cpu / FAULT_S <= MAX_CPU_SHARE, f"{cpu:.2f} s of CPU in {FAULT_S:g} s"
    assert worker.proc.returncode is None, "the worker exited"
    return {"ready_503_after_s": not_ready_after, "log_lines": lines, "cpu_s": round(cpu, 2)}


@pytest.mark.parametrize("server", ["7", "6.2"], indirect=True)
async def test_a_redis_refusing_writes_is_a_quiet_outage_and_nothing_is_lost(
    server: RedisServer,
    services: Services,
    shared_mysql: dict[str, str],
    tag: str,
    tmp_path: Path,
) -> None:
    env = _env(server, shared_mysql, tag, BATCH_SIZE="500", HEARTBEAT_TTL_S="15")
    queue, database = env["VOTE_QUEUE"], env["MYSQL_DATABASE"]
    ids = [f"v{i}" for i in range(TOTAL)]
    producer, admin = server.client(), sql_connect(services)
    log = tmp_path / "worker.log"
    try:
        async with running(env, log) as worker, httpx.AsyncClient(timeout=5) as client:
            await wait_ready(worker.url, timeout_s=60)
            figures: dict[str, object] = {"redis": server.info("server")["redis_version"]}
            for n, fault in enumerate(("noreplicas", "oom")):
                push(producer, queue, ids[n * TOTAL // 2 : (n + 1) * TOTAL // 2])
                await wait_until(
                    lambda: len(stored(admin, database)) > n * TOTAL // 2,  # noqa: B023
                    what="a first batch",
                )
                found = await _refuse_writes(server, worker, fault, client)
                figures.update({f"{fault}_{k}": v for k, v in found.items()})
            await wait_until(
                lambda: len(stored(admin, database)) == TOTAL, timeout_s=60, what="every vote"
            )
            counts = stored(admin, database)
            assert set(counts) == set(ids)
            assert set(counts.values()) == {1}
            assert producer.llen(queue) == 0
        FIGURES.append(("Redis refusing writes", figures))
    finally:
        producer.close()
        admin.close()
    text = log.read_text(errors="replace")
    assert "Traceback" not in text
    assert worker.proc.returncode == 0, text[-3000:]


@pytest.mark.parametrize("server", ["5.0"], indirect=True)
async def test_a_redis_older_than_6_2_is_named_once_and_nothing_crashes(
    server: RedisServer, shared_mysql: dict[str, str], tag: str, tmp_path: Path
) -> None:
    log = tmp_path / "worker.log"
    async with running(_env(server, shared_mysql, tag), log) as worker:
        async with httpx.AsyncClient(timeout=5) as client:
            await wait_until(
                lambda: "needs Redis 6.2 or later" in log.read_text(), what="the version named"
            )
            ready = await answer(worker.url + "/ready")
            assert ready is not None
            assert ready.status_code == 503
            await trio.sleep(8)  # several retries later
            ready = await client.get(worker.url + "/ready")
            assert ready.status_code == 503
            assert ready.json()["redis"] is False
            assert (await client.get(worker.url + "/live")).status_code == 200
        named = [line for line in worker.lines() if "needs Redis 6.2 or later" in line]
        assert len(named) == 1, worker.lines()
        assert worker.proc.returncode is None
    assert "Traceback" not in log.read_text(errors="replace")
    assert worker.proc.returncode == 0
