"""Redis and MariaDB servers of the tests' own, on free loopback ports, that they may restart.

The machine's shared Redis and MariaDB are never restarted: the suite starts a ``redis-server``
(append-only file, fsync on every write, so a restart keeps every acknowledged write) and a
``mariadbd`` on a fresh data directory (InnoDB, durable commits), each on a free port, as child
processes that it kills at the end.
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

import pymysql
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


@dataclass
class RedisServer(Server):
    password: str | None = None  # --requirepass: clients must AUTH

    def command(self) -> list[str]:
        return [
            "redis-server",
            "--port",
            str(self.port),
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
            *(["--requirepass", self.password] if self.password is not None else []),
            *self.extra,
        ]

    def client(self, db: int = 0) -> redis.Redis:
        """A client of this server (with its password, if it has one)."""
        return redis.Redis(port=self.port, db=db, password=self.password, socket_timeout=5)

    def answers(self) -> bool:
        client = redis.Redis(
            port=self.port, password=self.password, socket_timeout=1, socket_connect_timeout=1
        )
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()


@dataclass
class MariaDBServer(Server):
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
            f"--socket={self.directory / 'mysqld.sock'}",
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
            pymysql.connect(
                host="127.0.0.1", port=self.port, user="root", connect_timeout=1
            ).close()
        except pymysql.err.MySQLError:
            return False
        return True


@contextmanager
def own_mariadb(directory: Path, *options: str) -> Iterator[MariaDBServer]:
    """A private mariadbd with these options, for as long as the block runs."""
    server = MariaDBServer("mariadb", directory, extra=list(options))
    server.install()
    try:
        server.start_blocking()
        yield server
    finally:
        server.stop()


@dataclass
class OwnStores:
    redis: RedisServer
    mysql: MariaDBServer

    def stop(self) -> None:
        self.redis.stop()
        self.mysql.stop()
