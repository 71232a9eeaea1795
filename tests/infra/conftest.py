"""Private servers for the connection tests: TLS Redis with ACL users, a Unix-socket Redis, a
TLS MariaDB with accounts that require TLS or a client certificate; Sentinel and Cluster are
started by their own tests (``tests.servers``). All on loopback, on free ports, in short
temporary directories (a Unix socket's path is limited to about 100 bytes), killed at the end.
Each test skips with a reason when a program it needs is missing.

The stores are checked with the tests' own synchronous clients (redis-py, PyMySQL), never
through the worker's code.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymysql
import pytest
import redis

from tests.conftest import RunningWorker, Services, sql_connect, wait_until
from tests.infra.pki import PKI, make_pki
from tests.servers import MariaDBServer, RedisServer, RedisTLS, own_mariadb

# Secrets the tests look for in logs, errors and HTTP answers: they must never appear there.
REDIS_PASSWORD = f"redis-pw-{secrets.token_hex(8)}"
MYSQL_PASSWORD = f"mysql-pw-{secrets.token_hex(8)}"
# The Redis ACL user: only keys under the tests' queues (``tw...``), no dangerous command
# but INFO (for ``check``). The least a worker needs (docs/operations.md shows it).
REDIS_USER_ACL = [
    "worker",
    "on",
    f">{REDIS_PASSWORD}",
    "resetchannels",
    "~tw*",
    "-@all",
    "+@read",
    "+@write",
    "+@scripting",
    "-@dangerous",
    "+ping",
    "+wait",
    "+client|reply",
    "+acl|whoami",
    "+info",
]


# The tests' own user on the ACL servers (the worker's user may not list clients).
ADMIN_ACL = ["admin", "on", f">{REDIS_PASSWORD}-admin", "~*", "&*", "+@all"]


# How long the failover tests' producers wait for a replica to acknowledge a push (WAIT).
PUSH_WAIT_MS = 200

# Figures a test measured (the Sentinel failover's), printed at the end of the run.
FIGURES: list[tuple[str, dict[str, Any]]] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not FIGURES:
        return
    terminalreporter.section("connection tests: figures")
    for what, figures in FIGURES:
        shown = " ".join(
            f"{k}={v:.1f}s" if isinstance(v, float) else f"{k}={v}" for k, v in figures.items()
        )
        terminalreporter.write_line(f"{what}: {shown}")


def need(*programs: str) -> None:
    """Skip the test (with the reason) unless every program is installed."""
    for program in programs:
        if shutil.which(program) is None and not Path(program).exists():
            pytest.skip(f"{program} is not installed")


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def short_dir() -> Iterator[Path]:
    """A short temporary directory (Unix sockets), removed at the end of the session."""
    path = Path(tempfile.mkdtemp(prefix="tw-infra-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def start_or_fail(server: RedisServer | MariaDBServer, what: str) -> None:
    """Start it; skip if the program lacks what the test needs (a redis-server built without
    TLS), fail on anything else: a test's own mistake must not pass as a skip."""
    try:
        server.start_blocking(timeout_s=30)
    except RuntimeError:
        log = server.directory / f"{server.name}.log"
        tail = log.read_text(errors="replace")[-800:] if log.exists() else ""
        server.stop()
        if "tls" in tail.lower() and ("directive" in tail or "not support" in tail.lower()):
            pytest.skip(f"{what}: this build has no TLS ({tail.strip().splitlines()[-1]})")
        pytest.fail(f"{what} did not start: {tail}")


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


@dataclass
class TLSMariaDB:
    server: MariaDBServer
    # account name -> what it requires
    accounts: dict[str, str] = field(default_factory=dict)

    @property
    def port(self) -> int:
        return self.server.port

    def admin(self) -> pymysql.connections.Connection[pymysql.cursors.Cursor]:
        return self.server.admin()


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


def worker_env(tag: str, **extra: str) -> dict[str, str]:
    """The worker's own settings for a test: queue ``tw<tag>``, database ``tw_<tag>``."""
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


def mysql_of(services: Services) -> dict[str, str]:
    """The shared MariaDB's address and account, as the worker's environment."""
    return {
        "MYSQL_HOST": services.mysql_host,
        "MYSQL_PORT": str(services.mysql_port),
        "MYSQL_USER": services.mysql_user,
        "MYSQL_PASSWORD": services.mysql_password,
    }


@pytest.fixture
def shared_mysql(services: Services, tag: str) -> Iterator[dict[str, str]]:
    """The shared MariaDB's settings for the worker (database ``tw_<tag>``, dropped after)."""
    yield mysql_of(services)
    conn = sql_connect(services)
    with conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `tw_{tag}`")


def stored(conn: pymysql.connections.Connection[Any], database: str) -> dict[str, int]:
    """voter_id -> how many rows (0 rows: an empty dict, also when the table is missing)."""
    with conn.cursor() as cur:
        try:
            cur.execute(f"SELECT voter_id, COUNT(*) FROM `{database}`.votes GROUP BY voter_id")
        except pymysql.err.ProgrammingError:
            return {}
        return {str(v): int(n) for v, n in cur.fetchall()}


def newer_than(counts: dict[str, int], first: int) -> bool:
    """Whether a vote numbered ``first`` or later (``s123``, ``c123``) is stored."""
    return any(int(v[1:]) >= first for v in counts)


async def new_votes_stored(
    conn: pymysql.connections.Connection[Any], database: str, first: int
) -> None:
    """Wait until a vote numbered ``first`` or later is stored: new work flows again."""
    await wait_until(
        lambda: newer_than(stored(conn, database), first),
        timeout_s=60,
        what="votes pushed after the failover stored",
    )


async def stop_and_clean(
    worker: RunningWorker,
    client: redis.Redis,
    admin: pymysql.connections.Connection[Any],
    database: str,
    queue: str,
) -> None:
    """Stop the worker and wait for its drain, then remove its keys and its database."""
    worker.stop.set()
    await wait_until(lambda: bool(worker.exit_status), what="the drain")
    keys = list(client.scan_iter(match=f"{queue}*"))
    if keys:
        client.delete(*keys)
    client.close()
    with admin.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{database}`")
    admin.close()


def votes(ids: list[str]) -> list[bytes]:
    return [f'{{"voter_id": "{v}", "vote": "{"ab"[i % 2]}"}}'.encode() for i, v in enumerate(ids)]


def push(client: redis.Redis, queue: str, ids: list[str]) -> None:
    """LPUSH, as the seed's producers do (the worker takes from the right)."""
    for start in range(0, len(ids), 500):
        client.lpush(queue, *votes(ids[start : start + 500]))


def cli(
    args: list[str], env: dict[str, str], timeout_s: float = 60
) -> subprocess.CompletedProcess[str]:
    """``python -m trio_worker ARGS`` with exactly this configuration (no REDIS_*/MYSQL_* of
    the test run's own)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "MYSQL_"))}
    return subprocess.run(
        [sys.executable, "-P", "-m", "trio_worker", *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
