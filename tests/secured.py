"""Stores that ask for a password, and a worker process configured the way an operator does it
(environment variables only), for the credential and secret tests."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import httpx
import trio

from tests.conftest import WORKER_CMD, env_of
from tests.helpers import admin_sql
from tests.servers import RedisServer, free_port
from trio_worker.config import Config

ENDPOINTS = ("/health", "/ready", "/metrics", "/live")


@contextmanager
def password_redis(directory: Path, password: str) -> Iterator[RedisServer]:
    """A redis-server of our own that refuses clients without ``password``."""
    directory.mkdir(parents=True, exist_ok=True)
    server = RedisServer("redis", directory, password=password)
    try:
        server.start_blocking()
        yield server
    finally:
        server.stop()


@contextmanager
def mysql_account(config: Config, password: str) -> Iterator[str]:
    """A MariaDB account with ``password`` and every right on the test's database only."""
    user = f"tw_{uuid.uuid4().hex[:10]}"
    escaped = password.replace("\\", "\\\\").replace("'", "\\'")
    admin_sql(
        config,
        f"CREATE USER '{user}'@'%' IDENTIFIED BY '{escaped}'",
        f"GRANT ALL PRIVILEGES ON `{config.mysql_database}`.* TO '{user}'@'%'",
    )
    try:
        yield user
    finally:
        admin_sql(config, f"DROP USER IF EXISTS '{user}'@'%'")


def worker_env(
    config: Config, drop: Iterable[str] = (), **variables: str
) -> tuple[dict[str, str], str]:
    """The environment of a worker like ``config`` on a known HTTP port, with ``variables``
    added and ``drop`` removed; and the worker's base URL."""
    port = free_port()
    env = {**env_of(config), "PORT": str(port), "HOST": "127.0.0.1", **variables}
    for name in drop:
        env.pop(name, None)
    return env, f"http://127.0.0.1:{port}"


@asynccontextmanager
async def worker_process(env: dict[str, str], log: Path) -> AsyncIterator[trio.Process]:
    with log.open("ab") as out:
        proc = await trio.lowlevel.open_process(
            WORKER_CMD, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
        with trio.CancelScope(shield=True):
            await proc.wait()


def operator_command(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``python -P -m trio_worker <args>`` with ``env``; its output, both streams together."""
    return subprocess.run(
        [sys.executable, "-P", "-m", "trio_worker", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def answering(url: str, within_s: float = 30.0) -> None:
    """Wait until the worker's HTTP server answers at all."""
    with trio.fail_after(within_s):
        while True:
            try:
                async with httpx.AsyncClient(timeout=5) as client:
                    await client.get(url + "/live")
                return
            except httpx.TransportError:
                await trio.sleep(0.05)


async def http_bodies(url: str) -> dict[str, str]:
    """Each endpoint's status and body, as text."""
    out = {}
    async with httpx.AsyncClient(timeout=10) as client:
        for path in ENDPOINTS:
            response = await client.get(url + path)
            out[path] = f"{response.status_code} {response.text}"
    return out


def leaks(texts: dict[str, str], secrets: Iterable[str]) -> list[str]:
    """Where any of ``secrets`` shows in ``texts`` (name → text)."""
    return [
        f"{secret!r} in {name}"
        for name, text in texts.items()
        for secret in secrets
        if secret in text
    ]
