"""Private servers for the connection tests: TLS Redis with ACL users, a Unix-socket Redis, a
TLS MariaDB with accounts that require TLS or a client certificate; Sentinel and Cluster are
started by their own tests (``tests.support.replicated``). All on loopback, on free ports, in
short temporary directories (a Unix socket's path is limited to about 100 bytes), killed at the
end. Each test skips with a reason when a program it needs is missing. Every test here starts
servers of its own: each is marked ``slow`` (``just test-quick`` leaves them out).

The stores are checked with the tests' own synchronous clients (redis-py, PyMySQL), never
through the worker's code.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.support.credentials import ADMIN_ACL, MYSQL_PASSWORD, REDIS_PASSWORD, REDIS_USER_ACL
from tests.support.figures import FIGURES, write_figures
from tests.support.pki import PKI, make_pki
from tests.support.servers import (
    RedisServer,
    RedisTLS,
    TLSMariaDB,
    need,
    own_mariadb,
    start_or_fail,
)
from tests.support.services import Services, mysql_of, sql_connect

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.slow)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not FIGURES:
        return
    terminalreporter.section("connection tests: figures")
    write_figures(terminalreporter.write_line)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def short_dir() -> Iterator[Path]:
    """A short temporary directory (Unix sockets), removed at the end of the session."""
    path = Path(tempfile.mkdtemp(prefix="tw-infra-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def tls_redis(pki: PKI, short_dir: Path) -> Iterator[RedisServer]:
    """Redis on TLS only (no plain-text port), client certificates required, the default
    user off: only the ACL users ``worker`` (the worker's) and ``admin`` (the tests') log in."""
    need("redis-server")
    directory = short_dir / "tls-redis"
    directory.mkdir()
    server = RedisServer(
        "tls-redis",
        directory,
        tls=RedisTLS(pki.server.cert, pki.server.key, pki.ca, auth_clients="yes"),
        username="admin",
        password=f"{REDIS_PASSWORD}-admin",
        client_tls={
            "ssl_ca_certs": str(pki.ca),
            "ssl_certfile": str(pki.client.cert),
            "ssl_keyfile": str(pki.client.key),
        },
        extra=["--user", "default", "off", "--user", *REDIS_USER_ACL, "--user", *ADMIN_ACL],
    )
    start_or_fail(server, "redis-server with TLS (built without TLS?)")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def unix_redis(short_dir: Path) -> Iterator[RedisServer]:
    """Redis on a Unix socket (and a loopback port for the tests' own client), password set."""
    need("redis-server")
    directory = short_dir / "unix-redis"
    directory.mkdir()
    server = RedisServer(
        "unix-redis",
        directory,
        password=REDIS_PASSWORD,  # --requirepass
        unix_socket=directory / "redis.sock",
    )
    start_or_fail(server, "redis-server on a Unix socket")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def tls_mariadb(pki: PKI, short_dir: Path) -> Iterator[TLSMariaDB]:
    """A private mariadbd with TLS (the test CA's ``localhost`` certificate) and three
    accounts: ``tls_user`` REQUIRE SSL, ``x509_user`` REQUIRE X509, ``plain_user`` (nothing)."""
    need("/usr/sbin/mariadbd", "mariadb-install-db")
    directory = short_dir / "tls-mariadb"
    directory.mkdir()
    options = [
        f"--ssl-cert={pki.server.cert}",
        f"--ssl-key={pki.server.key}",
        f"--ssl-ca={pki.ca}",
    ]
    stack = ExitStack()
    try:
        server = stack.enter_context(own_mariadb(directory, *options))
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        stack.close()
        pytest.skip(f"mariadbd with TLS did not start: {exc}")
    with stack:
        db = TLSMariaDB(server, {"tls_user": "SSL", "x509_user": "X509", "plain_user": "NONE"})
        with server.admin() as conn, conn.cursor() as cur:
            cur.execute("SHOW VARIABLES LIKE 'have_ssl'")
            row = cur.fetchone()
            if row is None or row[1] != "YES":
                pytest.skip("this mariadbd has no TLS")
            for user, requires in db.accounts.items():
                cur.execute(
                    f"CREATE USER '{user}'@'%' IDENTIFIED BY '{MYSQL_PASSWORD}' REQUIRE {requires}"
                )
                cur.execute(f"GRANT ALL ON *.* TO '{user}'@'%'")
        yield db


@pytest.fixture
def tag() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture
def shared_mysql(services: Services, tag: str) -> Iterator[dict[str, str]]:
    """The shared MariaDB's settings for the worker (database ``tw_<tag>``, dropped after)."""
    yield mysql_of(services)
    conn = sql_connect(services)
    with conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `tw_{tag}`")
