"""Secrets (MYSQL_PASSWORD, REDIS_PASSWORD, a password in REDIS_URL) never appear in a log line,
an HTTP answer (/health /ready /metrics /live) or an error message, including the errors of
connections that fail because of them. The worker runs as a process at LOG_LEVEL=debug, so that
everything it could say is said."""

from __future__ import annotations

import signal
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
import trio

from tests.support.commands import cli, run_cli
from tests.support.credentials import secrets_shown
from tests.support.http import http_bodies, wait_answering
from tests.support.servers import free_port, password_redis
from tests.support.stores import mysql_account
from tests.support.workers import exit_status, worker_env, worker_process
from trio_worker.config import Config

pytestmark = pytest.mark.slow


def secret(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex}"


async def observe(env: dict[str, str], url: str, log: Path) -> dict[str, str]:
    """Run the worker a while (its stores refusing it), read every endpoint, stop it; then
    run ``check`` with the same environment. Everything it said, by where."""
    async with worker_process(env, log) as proc:
        await wait_answering(url)
        await trio.sleep(1.5)  # several failed attempts, each logged at debug level
        bodies = await http_bodies(url)
        proc.send_signal(signal.SIGTERM)
        status = await exit_status(proc, within_s=40)
    said = await trio.Path(log).read_text()
    assert status == 0, said
    check = await cli(env, "check")
    assert check.returncode == 1, check.stdout + check.stderr
    return {"log": said, **bodies, "check": check.stdout + check.stderr}


@pytest.mark.parametrize("log_format", ["json", "text"])
async def test_wrong_passwords_never_show_in_logs_http_or_errors(
    config: Config, tmp_path: Path, log_format: str
) -> None:
    redis_secret, mysql_secret = secret("redis"), secret("mysql")
    with (
        password_redis(tmp_path / "redis", secret("right")) as server,
        mysql_account(config, secret("right")) as user,
    ):
        cfg = replace(config, redis_host="127.0.0.1", redis_port=server.port)
        env, url = worker_env(
            cfg,
            REDIS_PASSWORD=redis_secret,
            MYSQL_USER=user,
            MYSQL_PASSWORD=mysql_secret,
            LOG_LEVEL="debug",
            LOG_FORMAT=log_format,
        )
        said = await observe(env, url, tmp_path / "worker.log")
    assert "503" in said["/health"], said["/health"]
    assert not secrets_shown(said, [redis_secret, mysql_secret])


async def test_a_password_in_redis_url_never_shows(config: Config, tmp_path: Path) -> None:
    url_secret = secret("url")
    redis_url = f"redis://operator:{url_secret}@127.0.0.1:{free_port()}/0"  # nothing listens
    env, url = worker_env(
        config,
        drop=["REDIS_HOST", "REDIS_PORT"],
        REDIS_URL=redis_url,
        LOG_LEVEL="debug",
    )
    said = await observe(env, url, tmp_path / "worker.log")
    assert not secrets_shown(said, [url_secret])


@pytest.mark.parametrize(
    "variables",
    [
        {"REDIS_URL": "ftp://user:{s}@host/0"},  # not a Redis URL
        {"REDIS_URL": "redis://user:{s}@host:99999/0"},  # a port out of range
        {"REDIS_URL": "redis://user:{s}@host/0", "REDIS_PASSWORD": "{s}"},  # both
    ],
    ids=["scheme", "port", "both"],
)
def test_a_bad_configuration_names_the_variable_never_the_secret(
    config: Config, variables: dict[str, str]
) -> None:
    value = secret("cfg")
    env, _ = worker_env(
        config,
        drop=["REDIS_HOST", "REDIS_PORT"],
        **{k: v.format(s=value) for k, v in variables.items()},
    )
    result = run_cli(env, "check")
    assert result.returncode == 2
    out = result.stdout + result.stderr
    assert "REDIS_" in out, out
    assert value not in out, out
