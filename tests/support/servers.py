"""Redis and MariaDB servers of the tests' own, on free loopback ports, that they may restart.

The machine's shared Redis and MariaDB are never restarted: the suite starts a ``redis-server``
(append-only file, fsync on every write, so a restart keeps every acknowledged write) and a
``mariadbd`` on a fresh data directory (InnoDB, durable commits), each on a free port, as child
processes that it kills at the end.

For the connection tests (``tests/infra``): a Redis server may listen on TLS only, require ACL
users or listen on a Unix socket (``RedisServer``'s ``tls``, ``username``/``password``,
``unix_socket``); ``replicated`` builds Sentinel groups and Clusters from them. Every one of them
listens on loopback only and is killed when its block ends. A test that needs a program the
machine lacks skips, naming it (``need``); one whose server does not start fails, unless the
program lacks what the test needs (``start_or_fail``).
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pymysql
import pytest
import redis
import trio


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    """A server process that can be restarted on the same port and data directory."""

    name: str
    directory: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    extra: list[str] = field(default_factory=list)  # more command-line options

    def command(self) -> list[str]:
        raise NotImplementedError

    def answers(self) -> bool:
        raise NotImplementedError

    def spawn(self) -> None:
        log = (self.directory / f"{self.name}.log").open("ab")
        with log:
            self.proc = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, cwd=self.directory
            )

    def start_blocking(self, timeout_s: float = 60.0) -> None:
        self.spawn()
        deadline = time.monotonic() + timeout_s
        while not self.answers():
            if time.monotonic() > deadline or self._exited():
                raise RuntimeError(f"{self.name} did not start: see {self.directory}")
            time.sleep(0.1)

    def _exited(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    async def restart(self, sig: signal.Signals, down_s: float) -> None:
        """Stop the server with ``sig``, stay down ``down_s``, start it again and wait for it."""
        assert self.proc is not None
        self.proc.send_signal(sig)
        with trio.move_on_after(60):
            while self.proc.poll() is None:  # noqa: ASYNC110 (a child process, not an event)
                await trio.sleep(0.05)
        if self.proc.poll() is None:
            self.proc.kill()
            await trio.to_thread.run_sync(self.proc.wait)
        await trio.sleep(down_s)
        self.spawn()
        with trio.fail_after(60):
            while not await trio.to_thread.run_sync(self.answers):
                if self._exited():
                    raise RuntimeError(f"{self.name} did not come back: see {self.directory}")
                await trio.sleep(0.1)
        self.restarts += 1

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def crash(self) -> None:
        """SIGKILL, as a machine failure would (``start_blocking`` brings it back)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


@dataclass(frozen=True)
class RedisTLS:
    """A Redis server's TLS files; ``auth_clients``: ``yes`` (mutual TLS), ``optional``, ``no``."""

    cert: Path
    key: Path
    ca: Path
    auth_clients: str = "yes"


S = TypeVar("S", bound=Server)


@dataclass
class RedisServer(Server):
    # TLS only (no plain-text port) when set; the client the tests use then needs a
    # certificate of the server's CA (``client_tls``).
    tls: RedisTLS | None = None
    # The tests' own client logs in with these. A password without a user name is also the
    # server's --requirepass (clients must AUTH); ACL users come with ``extra``.
    username: str | None = None
    password: str | None = None
    unix_socket: Path | None = None
    client_tls: dict[str, Any] = field(default_factory=dict)
    binary: str = "redis-server"  # another release's (``old_redis``)
    protocol: int = 3  # of the tests' own client: 2 for a Redis before 6 (no HELLO)

    def command(self) -> list[str]:
        listen = ["--port", str(self.port)]
        if self.tls is not None:
            listen = [
                "--port",
                "0",
                "--tls-port",
                str(self.port),
                "--tls-cert-file",
                str(self.tls.cert),
                "--tls-key-file",
                str(self.tls.key),
                "--tls-ca-cert-file",
                str(self.tls.ca),
                "--tls-auth-clients",
                self.tls.auth_clients,
            ]
        if self.unix_socket is not None:
            listen += ["--unixsocket", str(self.unix_socket), "--unixsocketperm", "700"]
        return [
            self.binary,
            *listen,
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.directory),
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--daemonize",
            "no",
            *(
                ["--requirepass", self.password]
                if self.password is not None and self.username is None
                else []
            ),
            *self.extra,
        ]

    def client(self, db: int = 0, **options: Any) -> redis.Redis:
        """A synchronous client of the tests' own (with the password, TLS and user the server
        wants)."""
        settings: dict[str, Any] = {
            "port": self.port,
            "db": db,
            "username": self.username,
            "password": self.password,
            "socket_timeout": 5,
            "socket_connect_timeout": 2,
            "protocol": self.protocol,
        }
        if self.tls is not None:
            settings.update(ssl=True, ssl_check_hostname=False, **self.client_tls)
        settings.update(options)
        return redis.Redis(**settings)

    def answers(self) -> bool:
        return pings(self.client(socket_timeout=1, socket_connect_timeout=1))

    def info(self, section: str) -> dict[str, str]:
        client = self.client()
        try:
            raw: dict[str, Any] = client.info(section)
        finally:
            client.close()
        return {k: str(v) for k, v in raw.items()}

    def replicas_online(self) -> int:
        """Replicas in sync with this server (initial sync done, streaming)."""
        client = self.client()
        try:
            raw: dict[str, Any] = client.info("replication")
        finally:
            client.close()
        return sum(
            1
            for k, v in raw.items()
            if k.startswith("slave") and isinstance(v, dict) and v.get("state") == "online"
        )


@dataclass
class MariaDBServer(Server):
    # Tell "up" over the Unix socket (as root), for servers whose TCP port wants TLS.
    admin_over_socket: bool = False

    @property
    def socket_path(self) -> Path:
        return self.directory / "mysqld.sock"

    def install(self) -> None:
        data = self.directory / "data"
        if data.exists():
            shutil.rmtree(data)
        subprocess.run(
            [
                "mariadb-install-db",
                "--no-defaults",
                f"--datadir={data}",
                "--auth-root-authentication-method=normal",
                "--user=root",
                "--skip-test-db",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )

    def command(self) -> list[str]:
        return [
            "/usr/sbin/mariadbd",
            "--no-defaults",
            "--user=root",
            f"--datadir={self.directory / 'data'}",
            f"--socket={self.socket_path}",
            f"--port={self.port}",
            "--bind-address=127.0.0.1",
            "--skip-name-resolve",
            "--skip-log-bin",
            "--innodb-buffer-pool-size=64M",
            "--innodb-log-file-size=64M",
            "--max-connections=300",
            # Durable commits: an acknowledged COMMIT survives the restart.
            "--innodb-flush-log-at-trx-commit=1",
            *self.extra,
        ]

    def answers(self) -> bool:
        try:
            self.admin(connect_timeout=1).close()
        except pymysql.err.MySQLError:
            return False
        return True

    def admin(self, **options: Any) -> pymysql.connections.Connection[pymysql.cursors.Cursor]:
        """A root connection, autocommit (over the socket with ``admin_over_socket``)."""
        where: dict[str, Any] = (
            {"unix_socket": str(self.socket_path)}
            if self.admin_over_socket
            else {"host": "127.0.0.1", "port": self.port}
        )
        return pymysql.connect(user="root", autocommit=True, **where, **options)


@contextmanager
def started(server: S) -> Iterator[S]:
    """``server`` running for as long as the block runs."""
    try:
        server.start_blocking()
        yield server
    finally:
        server.stop()


@contextmanager
def own_mariadb(directory: Path, *options: str) -> Iterator[MariaDBServer]:
    """A private mariadbd with these options, for as long as the block runs."""
    server = MariaDBServer("mariadb", directory, extra=list(options))
    server.install()
    with started(server):
        yield server


@dataclass
class OwnStores:
    redis: RedisServer
    mysql: MariaDBServer

    def stop(self) -> None:
        self.redis.stop()
        self.mysql.stop()


def command(client: redis.Redis, *args: Any) -> Any:
    """A raw command (redis-py's ``execute_command`` is untyped)."""
    return client.execute_command(*args)  # type: ignore[no-untyped-call]


def stop_all(servers: list[Any]) -> None:
    for server in reversed(servers):
        server.stop()


def pings(client: redis.Redis) -> bool:
    """Whether the server answers ``client``'s PING (closed after)."""
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def need(*programs: str) -> None:
    """Skip the test (with the reason) unless every program is installed."""
    for program in programs:
        if shutil.which(program) is None and not Path(program).exists():
            pytest.skip(f"{program} is not installed")


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


@contextmanager
def password_redis(directory: Path, password: str) -> Iterator[RedisServer]:
    """A redis-server of our own that refuses clients without ``password``."""
    directory.mkdir(parents=True, exist_ok=True)
    with started(RedisServer("redis", directory, password=password)) as server:
        yield server


@dataclass
class TLSMariaDB:
    """A private mariadbd with TLS, and the accounts made on it."""

    server: MariaDBServer
    # account name -> what it requires
    accounts: dict[str, str] = field(default_factory=dict)

    @property
    def port(self) -> int:
        return self.server.port

    def admin(self) -> pymysql.connections.Connection[pymysql.cursors.Cursor]:
        return self.server.admin()
