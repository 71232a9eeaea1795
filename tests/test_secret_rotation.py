"""Secrets that rotate: a running worker whose password file is rewritten, after the store
changed the password and ended the old sessions, logs in with the new one and keeps storing
votes, in the same process, each vote exactly once. MySQL: a dedicated account on the shared
MariaDB (ALTER USER); Redis: a redis-server of the test's own (requirepass). The shared servers'
configuration is never touched."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
import redis
import trio

from tests.support.http import wait_answering
from tests.support.servers import command, password_redis
from tests.support.stores import admin_sql, mysql_account, push_votes, sql, voter_counts
from tests.support.waiting import wait_until
from tests.support.workers import exit_status, worker_env, worker_process
from trio_worker.config import Config

pytestmark = pytest.mark.slow

# The bound: votes are stored again within this long after the rotation.
RECOVERY_S = 30.0
PUSH_EVERY_S = 0.2


def rewrite(path: Path, secret: str) -> None:
    """Replace a secret file at once, as the kubelet updates a mounted Secret (a new file,
    then a rename): a reader sees the old content or the new, never half."""
    fresh = path.with_name(path.name + ".new")
    fresh.write_text(secret + "\n", encoding="utf-8")
    os.replace(fresh, path)


async def produce(push: Callable[[str], list[str]], sent: list[str], stop: trio.Event) -> None:
    batch = 0
    while not stop.is_set():
        sent.extend(await trio.to_thread.run_sync(push, f"p{batch}-"))
        batch += 1
        with trio.move_on_after(PUSH_EVERY_S):
            await stop.wait()


def stored(config: Config, voter_id: str) -> bool:
    return bool(sql(config, f"SELECT 1 FROM votes WHERE voter_id = '{voter_id}'"))


async def rotate_under_load(
    config: Config,
    proc: trio.Process,
    push: Callable[[str], list[str]],
    rotate: Callable[[], None],
    nursery: trio.Nursery,
) -> tuple[list[str], float]:
    """Votes flow; ``rotate()``; a marker vote pushed after it must be stored within
    RECOVERY_S. Returns every vote sent and how long the marker took."""
    sent: list[str] = []
    stop = trio.Event()
    nursery.start_soon(produce, push, sent, stop)
    await wait_until(lambda: len(voter_counts(config)) >= 50, what="votes flowing")
    pid = proc.pid
    await trio.to_thread.run_sync(rotate)
    rotated_at = trio.current_time()
    (marker,) = await trio.to_thread.run_sync(push, "after-")
    sent.append(marker)
    await wait_until(lambda: stored(config, marker), RECOVERY_S, what="a vote after the rotation")
    took = trio.current_time() - rotated_at
    stop.set()
    await wait_until(lambda: len(voter_counts(config)) == len(sent), what="every vote stored")
    assert voter_counts(config) == dict.fromkeys(sent, 1)
    assert (proc.pid, proc.returncode) == (pid, None), "the worker restarted"
    return sent, took


async def test_a_rotated_mysql_password_is_picked_up_without_a_restart(
    config: Config, rds: redis.Redis, tmp_path: Path, nursery: trio.Nursery
) -> None:
    old, new = f"old-{uuid.uuid4().hex}", f"new-{uuid.uuid4().hex}"
    secret = tmp_path / "mysql-password"
    secret.write_text(old + "\n")
    with mysql_account(config, old) as user:
        env, url = worker_env(
            config, MYSQL_USER=user, MYSQL_PASSWORD_FILE=str(secret), drop=["MYSQL_PASSWORD"]
        )
        log = tmp_path / "worker.log"
        async with worker_process(env, log) as proc:
            await wait_answering(url)

            def rotate() -> None:
                escaped = new.replace("'", "\\'")
                admin_sql(config, f"ALTER USER '{user}'@'%' IDENTIFIED BY '{escaped}'")
                rewrite(secret, new)
                sessions = sql(
                    config,
                    f"SELECT ID FROM information_schema.PROCESSLIST WHERE USER = '{user}'",
                )
                assert sessions, "the worker has no session to end"
                admin_sql(config, *[f"KILL CONNECTION {session}" for (session,) in sessions])

            def push(prefix: str) -> list[str]:
                return push_votes(rds, config, 1 if prefix == "after-" else 10, prefix=prefix)

            _, took = await rotate_under_load(config, proc, push, rotate, nursery)
            proc.send_signal(signal.SIGTERM)
            assert await exit_status(proc, within_s=config.shutdown_timeout_s + 10) == 0
        said = log.read_text()
    assert "Access denied" not in said, "the old password was tried after the rotation"
    assert old not in said
    assert new not in said
    print(f"\nMySQL rotation: a vote pushed after it stored in {took:.2f} s")


async def test_a_rotated_redis_password_is_picked_up_without_a_restart(
    config: Config, tmp_path: Path, nursery: trio.Nursery
) -> None:
    old, new = f"old-{uuid.uuid4().hex}", f"new-{uuid.uuid4().hex}"
    secret = tmp_path / "redis-password"
    secret.write_text(old + "\n")
    with password_redis(tmp_path / "redis", old) as server:
        cfg = replace(config, redis_host="127.0.0.1", redis_port=server.port)
        env, url = worker_env(cfg, REDIS_PASSWORD_FILE=str(secret))
        clients = [server.client()]  # the test's own, with whichever password works now

        def push(prefix: str) -> list[str]:
            return push_votes(clients[-1], cfg, 1 if prefix == "after-" else 10, prefix=prefix)

        def rotate() -> None:
            admin = clients[-1]
            command(admin, "CONFIG", "SET", "requirepass", new)
            rewrite(secret, new)
            clients.append(server.client(password=new))
            # Every session logged in with the old password ends (ours last: SKIPME).
            killed = command(admin, "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
            assert int(killed) > 0, "the worker had no connection to end"

        log = tmp_path / "worker.log"
        try:
            async with worker_process(env, log) as proc:
                await wait_answering(url)
                _, took = await rotate_under_load(config, proc, push, rotate, nursery)
                proc.send_signal(signal.SIGTERM)
                assert await exit_status(proc, within_s=config.shutdown_timeout_s + 10) == 0
        finally:
            for client in clients:
                client.close()
        said = log.read_text()
    assert "WRONGPASS" not in said, said[-2000:]
    assert "invalid password" not in said.lower(), said[-2000:]
    assert old not in said
    assert new not in said
    print(f"\nRedis rotation: a vote pushed after it stored in {took:.2f} s")
