"""The worker under test: its environment, the real service in the test's own Trio run
(``RunningWorker``, behind the ``start_worker`` fixture), and the worker as a process of its own
(``python -m trio_worker run``), configured by its environment as an operator configures it.

The worker processes can be another build (e.g. the last release, to show that a regression
test fails there): ``TRIO_WORKER_UNDER_TEST=<a directory holding trio_worker/>``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pymysql
import redis
import trio

from tests.support.servers import free_port
from tests.support.waiting import wait_until
from trio_worker import service
from trio_worker.config import Config

# -P: the package comes from the environment (or TRIO_WORKER_UNDER_TEST), not the current folder.
WORKER_CMD = [sys.executable, "-P", "-m", "trio_worker", "run"]


def process_env(variables: Mapping[str, str]) -> dict[str, str]:
    """The whole environment of a process configured by exactly ``variables``: this test run's
    environment without its own REDIS_* and MYSQL_*, output unbuffered, ``variables`` on top,
    and with TRIO_WORKER_UNDER_TEST, that build's package. Applied twice, the same."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "MYSQL_"))}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(variables)
    under_test = os.environ.get("TRIO_WORKER_UNDER_TEST")
    if under_test:
        env["PYTHONPATH"] = under_test
    return env


def env_of(config: Config, drop: Iterable[str] = (), **variables: str) -> dict[str, str]:
    """The environment that configures a worker process like ``config``, with ``variables``
    added and ``drop`` removed."""
    settings = {
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
        **variables,
    }
    for name in drop:
        settings.pop(name, None)
    return process_env(settings)


def worker_env(
    config: Config, drop: Iterable[str] = (), **variables: str
) -> tuple[dict[str, str], str]:
    """``env_of`` on a known HTTP port of loopback; and the worker's base URL."""
    port = free_port()
    env = env_of(config, drop, **{"HOST": "127.0.0.1", "PORT": str(port), **variables})
    return env, f"http://127.0.0.1:{port}"


def tagged_env(tag: str, **extra: str) -> dict[str, str]:
    """The worker's own settings for a test whose stores are set apart (no address of a store):
    queue ``tw<tag>``, database ``tw_<tag>``."""
    return {
        "VOTE_QUEUE": f"tw{tag}",
        "MYSQL_DATABASE": f"tw_{tag}",
        "WORKER_ID": f"infra-{tag}",
        "HOST": "127.0.0.1",
        "PORT": "0",
        "LOG_FORMAT": "text",
        "BATCH_SIZE": "200",
        "HEARTBEAT_TTL_S": "3",
        "SHUTDOWN_TIMEOUT_S": "20",
        **extra,
    }


# --- in this Trio run -----------------------------------------------------------------------


@dataclass
class RunningWorker:
    config: Config
    url: str
    stop: trio.Event
    exit_status: list[int]


async def start_service(nursery: trio.Nursery, config: Config, **changes: Any) -> RunningWorker:
    """The real service, started in ``nursery`` with ``config`` (and ``changes`` to it); it is
    listening when this returns. Set ``stop`` to drain it; ``exit_status`` then gets its status."""
    cfg = replace(config, **changes) if changes else config
    stop = trio.Event()
    exit_status: list[int] = []

    async def main(*, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED) -> None:
        exit_status.append(await service.run(cfg, stop=stop, task_status=task_status))

    binds = await nursery.start(main)
    return RunningWorker(cfg, binds[0].replace("0.0.0.0", "127.0.0.1"), stop, exit_status)


async def stop_and_clean(
    worker: RunningWorker,
    client: redis.Redis,
    admin: pymysql.connections.Connection[Any],
    database: str,
    queue: str,
) -> None:
    """Stop the worker and wait for its drain, then remove its keys and its database (and
    close both clients)."""
    worker.stop.set()
    await wait_until(lambda: bool(worker.exit_status), what="the drain")
    keys = list(client.scan_iter(match=f"{queue}*"))
    if keys:
        client.delete(*keys)
    client.close()
    with admin.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{database}`")
    admin.close()


# --- as a process of its own ------------------------------------------------------------------


@asynccontextmanager
async def worker_process(
    worker: Config | Mapping[str, str], log: Path, *, drain_s: float | None = None, **env: str
) -> AsyncIterator[trio.Process]:
    """``python -P -m trio_worker run`` configured like a ``Config``, or by these variables (see
    ``process_env``), with ``env`` on top; its output appended to ``log``. Still running at the
    end: SIGTERM and up to ``drain_s`` to drain when given, then SIGKILL."""
    full = env_of(worker, **env) if isinstance(worker, Config) else process_env({**worker, **env})
    with log.open("ab") as out:
        proc = await trio.lowlevel.open_process(
            WORKER_CMD, env=full, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        yield proc
    finally:
        if proc.returncode is None and drain_s is not None:
            proc.terminate()
            with trio.move_on_after(drain_s):
                await proc.wait()
        if proc.returncode is None:
            proc.kill()
        with trio.CancelScope(shield=True):
            await proc.wait()


async def exit_status(proc: trio.Process, within_s: float) -> int | None:
    """The process's exit status, or None if it is still running after ``within_s``."""
    with trio.move_on_after(within_s):
        return await proc.wait()
    return None
