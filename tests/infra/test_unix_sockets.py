"""Both stores through Unix sockets: ``REDIS_URL=unix:///path?db=N`` and ``MYSQL_UNIX_SOCKET``
(the way a Cloud SQL Auth Proxy is reached)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.commands import run_cli
from tests.support.credentials import MYSQL_PASSWORD, REDIS_PASSWORD
from tests.support.servers import RedisServer, TLSMariaDB
from tests.support.stores import push, stored
from tests.support.waiting import wait_until
from tests.support.workers import stop_and_clean, tagged_env
from trio_worker.config import from_env


def socket_env(
    redis_server: RedisServer, db: TLSMariaDB, secret: Path, **extra: str
) -> dict[str, str]:
    assert redis_server.unix_socket is not None
    return {
        "REDIS_URL": f"unix://{redis_server.unix_socket}?db=3",
        "REDIS_PASSWORD_FILE": str(secret),
        "MYSQL_UNIX_SOCKET": str(db.server.socket_path),
        "MYSQL_USER": "plain_user",
        "MYSQL_PASSWORD": MYSQL_PASSWORD,
        **extra,
    }


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "redis-password"
    path.write_text(REDIS_PASSWORD)
    return path


async def test_a_worker_drains_through_unix_sockets(
    unix_redis: RedisServer, tls_mariadb: TLSMariaDB, secret: Path, tag: str, start_worker: Any
) -> None:
    config = from_env({**tagged_env(tag), **socket_env(unix_redis, tls_mariadb, secret)})
    assert config.redis_unix_socket == str(unix_redis.unix_socket)
    assert config.redis_db == 3
    worker = await start_worker(config)
    client = unix_redis.client(db=3)
    admin = tls_mariadb.admin()
    ids = [f"sock{i}" for i in range(1000)]
    try:
        push(client, config.vote_queue, ids)
        await wait_until(
            lambda: len(stored(admin, config.mysql_database)) == len(ids), what="every vote stored"
        )
        assert stored(admin, config.mysql_database) == dict.fromkeys(ids, 1)
        # The worker really is on the socket, and on database 3: the server says so.
        on_socket = [
            c for c in client.client_list() if c["addr"].startswith(str(unix_redis.unix_socket))
        ]
        # (a connection being opened may not have selected its database yet)
        assert any(c["db"] == "3" for c in on_socket), on_socket
    finally:
        await stop_and_clean(worker, client, admin, config.mysql_database, config.vote_queue)
    assert worker.exit_status == [0]


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        # As the mysql client: PREFERRED over a socket is plain text (the socket is local).
        ("PREFERRED", "Unix socket, plain text, user 'plain_user@%'"),
        ("REQUIRED", "Unix socket, TLSv1."),
    ],
)
def test_check_says_both_stores_are_on_sockets(
    unix_redis: RedisServer,
    tls_mariadb: TLSMariaDB,
    secret: Path,
    tag: str,
    mode: str,
    expected: str,
) -> None:
    env = {**tagged_env(tag), **socket_env(unix_redis, tls_mariadb, secret, MYSQL_SSL_MODE=mode)}
    result = run_cli(env, "check")
    assert result.returncode == 0, result.stderr
    assert (
        f"ok: Redis at unix:{unix_redis.unix_socket}: reachable (Unix socket, plain text, user"
        " 'default')"
    ) in result.stdout
    assert f"ok: MySQL at unix:{tls_mariadb.server.socket_path}: reachable (server" in result.stdout
    assert expected in result.stdout
    for secret_text in (REDIS_PASSWORD, MYSQL_PASSWORD):
        assert secret_text not in result.stdout + result.stderr
