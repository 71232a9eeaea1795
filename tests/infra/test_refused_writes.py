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
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import trio

from tests.conftest import Services, sql_connect, wait_until
from tests.infra.conftest import FIGURES, need, push, start_or_fail, stored, worker_env
from tests.old_redis import binary
from tests.servers import RedisServer, free_port

pytestmark = pytest.mark.slow

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
        pytest.skip(f"no Redis {version} here: `just old-redis` builds it (tests/old_redis.py)")
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


class Worker:
    """``python -m trio_worker run`` with ``env``, its log in ``log``, HTTP on a port of its own."""

    def __init__(self, proc: trio.Process, log: Path, port: int) -> None:
        self.proc = proc
        self.log = log
        self.url = f"http://127.0.0.1:{port}"

    def lines(self) -> list[str]:
        return self.log.read_text(errors="replace").splitlines()

    async def answer(self, path: str) -> int:
        """The status of ``GET path``; 0 while nothing listens yet."""
        try:
            async with httpx.AsyncClient(timeout=5) as client:
                return (await client.get(self.url + path)).status_code
        except httpx.TransportError:
            return 0

    async def until_ready(self) -> None:
        with trio.fail_after(60):
            while await self.answer("/ready") != 200:  # noqa: ASYNC110 (an outside view)
                await trio.sleep(0.1)


@asynccontextmanager
async def running(env: dict[str, str], log: Path) -> AsyncIterator[Worker]:
    """The worker as a process; SIGTERM on the way out (killed if it doesn't drain in 30 s)."""
    port = free_port()
    with log.open("ab") as out:
        proc = await trio.lowlevel.open_process(
            [sys.executable, "-P", "-m", "trio_worker", "run"],
            env={**env, "PORT": str(port), "PYTHONUNBUFFERED": "1"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield Worker(proc, log, port)
    finally:
        proc.terminate()
        with trio.move_on_after(30):
            await proc.wait()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def _env(server: RedisServer, mysql: dict[str, str], tag: str, **extra: str) -> dict[str, str]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "MYSQL_"))},
        **worker_env(tag, **extra),
        **mysql,
        "REDIS_HOST": "127.0.0.1",
        "REDIS_PORT": str(server.port),
    }
    under_test = os.environ.get("TRIO_WORKER_UNDER_TEST")  # another build (tests/conftest.py)
    if under_test:
        env["PYTHONPATH"] = under_test
    return env


async def _status(client: httpx.AsyncClient, url: str) -> tuple[int, dict[str, object]]:
    answer = await client.get(url)
    return answer.status_code, answer.json()


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
            await worker.until_ready()
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
            assert await worker.answer("/ready") == 503
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
