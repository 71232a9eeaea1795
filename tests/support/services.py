"""The Redis and MariaDB the tests use, and the tests' own connections to them.

Services are found in this order: environment variables (REDIS_HOST/REDIS_PORT,
MYSQL_HOST/MYSQL_PORT/MYSQL_USER/MYSQL_PASSWORD), then testcontainers when a Docker engine
answers, then the local defaults (127.0.0.1:6379, root@127.0.0.1:3306 with no password).
Tests talk to the stores with synchronous clients (redis-py, PyMySQL), so that what they check
never shares a code path with the worker under test.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pymysql


@dataclass(frozen=True)
class Services:
    redis_host: str
    redis_port: int
    mysql_host: str
    mysql_port: int
    mysql_user: str
    mysql_password: str


def docker_answers() -> bool:
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


@contextmanager
def found_services() -> Iterator[Services]:
    """The services, found as the module says; containers started here stop after the block."""
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
    if docker_answers():
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


def redis_of(services: Services) -> dict[str, str]:
    """The shared Redis's address, as the worker's environment."""
    return {"REDIS_HOST": services.redis_host, "REDIS_PORT": str(services.redis_port)}


def mysql_of(services: Services) -> dict[str, str]:
    """The shared MariaDB's address and account, as the worker's environment."""
    return {
        "MYSQL_HOST": services.mysql_host,
        "MYSQL_PORT": str(services.mysql_port),
        "MYSQL_USER": services.mysql_user,
        "MYSQL_PASSWORD": services.mysql_password,
    }
