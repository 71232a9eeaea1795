"""Credentials as an operator gives them, against stores that check them: REDIS_PASSWORD and
REDIS_DB on a password-protected redis-server of the test's own, MYSQL_PASSWORD_FILE for a
MariaDB account with a password. The real worker, as a process, configured by its environment."""

from __future__ import annotations

import signal
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
import redis
import trio

from tests.support.credentials import secrets_shown
from tests.support.http import http_bodies, wait_answering
from tests.support.servers import password_redis
from tests.support.stores import mysql_account, push_votes, row_count, voter_counts
from tests.support.waiting import wait_until
from tests.support.workers import exit_status, worker_env, worker_process
from trio_worker.config import Config

pytestmark = pytest.mark.slow

DB = 5


async def test_redis_password_and_db_are_used(config: Config, tmp_path: Path) -> None:
    password = f"redis pw {uuid.uuid4().hex} #:@/"
    with password_redis(tmp_path / "redis", password) as server:
        cfg = replace(config, redis_host="127.0.0.1", redis_port=server.port)
        env, url = worker_env(cfg, REDIS_PASSWORD=password, REDIS_DB=str(DB), LOG_LEVEL="debug")
        ours, default = server.client(db=DB), server.client(db=0)
        ids = push_votes(ours, cfg, 2000)
        log = tmp_path / "worker.log"
        async with worker_process(env, log) as proc:
            await wait_until(lambda: row_count(config) == 2000, what="2000 rows")
            assert ours.exists(f"{cfg.vote_queue}:worker:{cfg.worker_id}")
            assert default.dbsize() == 0, "the worker wrote to database 0"
            bodies = await http_bodies(url)
            assert bodies["/ready"].startswith("200")
            proc.send_signal(signal.SIGTERM)
            assert await exit_status(proc, within_s=cfg.shutdown_timeout_s + 10) == 0
        assert voter_counts(config) == dict.fromkeys(ids, 1)
        assert ours.llen(cfg.vote_queue) == 0
        assert list(ours.scan_iter(match=f"{cfg.vote_queue}:*")) == []
        assert default.dbsize() == 0
        assert not secrets_shown({"log": log.read_text(), **bodies}, [password])


async def test_a_wrong_redis_password_is_a_store_failure_not_an_exit(
    config: Config, tmp_path: Path
) -> None:
    with password_redis(tmp_path / "redis", f"right-{uuid.uuid4().hex}") as server:
        cfg = replace(config, redis_host="127.0.0.1", redis_port=server.port)
        env, url = worker_env(cfg, REDIS_PASSWORD="not-the-password", REDIS_DB=str(DB))
        async with worker_process(env, tmp_path / "worker.log") as proc:
            await wait_answering(url)
            bodies = await http_bodies(url)
            assert bodies["/health"].startswith("503")
            assert '"redis":"disconnected"' in bodies["/health"].replace(" ", "")
            assert bodies["/ready"].startswith("503")
            await trio.sleep(1.0)  # several retries later it still runs
            assert proc.returncode is None
            proc.send_signal(signal.SIGTERM)
            assert await exit_status(proc, within_s=cfg.shutdown_timeout_s + 10) == 0


@pytest.mark.parametrize(
    "characters",
    [
        # Spaces, symbols and a trailing space: only the file's trailing newline is not the
        # password.
        " #$%&()*+,-./:;<=>?@[]^_{|}~ ",
        # The file is UTF-8, as the account's password was given to the server.
        " caf\u00e9 \u20ac \U0001f511 ",
    ],
    ids=["ascii", "non-ascii"],
)
async def test_mysql_password_file_for_an_account_with_a_password(
    config: Config, rds: redis.Redis, tmp_path: Path, characters: str
) -> None:
    password = f" p w {uuid.uuid4().hex}{characters}"
    secret_file = tmp_path / "mysql_password"
    secret_file.write_text(password + "\n")
    with mysql_account(config, password) as user:
        env, url = worker_env(
            config,
            MYSQL_USER=user,
            MYSQL_PASSWORD_FILE=str(secret_file),
            LOG_LEVEL="debug",
            drop=["MYSQL_PASSWORD"],
        )
        ids = push_votes(rds, config, 1000)
        log = tmp_path / "worker.log"
        async with worker_process(env, log) as proc:
            await wait_until(
                lambda: row_count(config) == 1000 or proc.returncode is not None,
                what="1000 rows",
            )
            assert proc.returncode is None, log.read_text()
            bodies = await http_bodies(url)
            assert bodies["/health"].startswith("200")
            proc.send_signal(signal.SIGTERM)
            assert await exit_status(proc, within_s=config.shutdown_timeout_s + 10) == 0
        assert voter_counts(config) == dict.fromkeys(ids, 1)
        assert not secrets_shown({"log": log.read_text(), **bodies}, [password.strip()])


async def test_a_password_file_with_the_wrong_password_is_a_store_failure(
    config: Config, tmp_path: Path
) -> None:
    secret_file = tmp_path / "mysql_password"
    secret_file.write_text("wrong\n")
    with mysql_account(config, f"right-{uuid.uuid4().hex}") as user:
        env, url = worker_env(
            config, MYSQL_USER=user, MYSQL_PASSWORD_FILE=str(secret_file), drop=["MYSQL_PASSWORD"]
        )
        async with worker_process(env, tmp_path / "worker.log") as proc:
            await wait_answering(url)
            await trio.sleep(1.0)  # several retries later it still runs, and says why not ready
            bodies = await http_bodies(url)
            assert bodies["/health"].startswith("503")
            assert '"database":"disconnected"' in bodies["/health"].replace(" ", "")
            assert proc.returncode is None
