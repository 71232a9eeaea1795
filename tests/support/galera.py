"""A MariaDB Galera Cluster of the tests' own, behind HAProxy with the shipped health check.

``galera_cluster`` starts three ``mariadbd`` nodes (Debian's ``galera-4`` provider, rsync state
transfers), one ``deploy/galera/clustercheck.py`` responder beside each, and ``haproxy`` with
``deploy/galera/haproxy.cfg`` itself, its addresses given as the environment variables the file
reads: the configuration the documentation tells operators to run, on free loopback ports.
Every process is a child of the tests, in a temporary directory, killed when the block ends.
The Galera tests (tests/infra/test_galera.py) and ``just bench --galera`` both use it.

The cluster is checked with PyMySQL and HAProxy's own stats socket, never through the worker.
"""

from __future__ import annotations

import csv
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymysql

from tests.support.servers import MariaDBServer, Server, free_port, stop_all
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
HAPROXY_CFG = ROOT / "deploy" / "galera" / "haproxy.cfg"
CLUSTERCHECK = ROOT / "deploy" / "galera" / "clustercheck.py"
PROVIDER = Path("/usr/lib/galera/libgalera_smm.so")
# What a cluster needs, for a test's skip message: programs on the PATH, or paths.
NEEDS = (
    "/usr/sbin/mariadbd",
    "mariadb-install-db",
    "mariadb",  # the responder's client
    str(PROVIDER),
    "wsrep_sst_rsync",
    "rsync",
    "haproxy",
)
SYNCED = "4"


def missing() -> list[str]:
    """What of ``NEEDS`` this machine lacks."""
    return [p for p in NEEDS if shutil.which(p) is None and not Path(p).exists()]


@dataclass
class GaleraNode(MariaDBServer):
    """A ``mariadbd`` with the wsrep provider; ``bootstrap`` starts a new cluster."""

    peers: list[int] = field(default_factory=list)  # every node's group communication port
    gcomm_port: int = field(default_factory=free_port)
    ist_port: int = field(default_factory=free_port)
    sst_port: int = field(default_factory=free_port)
    bootstrap: bool = False

    def command(self) -> list[str]:
        provider_options = ";".join(
            [
                f"gmcast.listen_addr=tcp://127.0.0.1:{self.gcomm_port}",
                f"ist.recv_addr=127.0.0.1:{self.ist_port}",
                # The write-set cache a rejoining node catches up from (IST): 128 MB by
                # default, written out in full on every node; the tests' clusters are small.
                "gcache.size=32M",
            ]
        )
        return [
            *super().command(),
            "--wsrep-on=ON",
            f"--wsrep-provider={PROVIDER}",
            "--wsrep-cluster-name=trio-worker-tests",
            "--wsrep-cluster-address=gcomm://" + ",".join(f"127.0.0.1:{p}" for p in self.peers),
            f"--wsrep-node-name={self.name}",
            f"--wsrep-node-address=127.0.0.1:{self.gcomm_port}",
            f"--wsrep-provider-options={provider_options}",
            "--wsrep-sst-method=rsync",
            f"--wsrep-sst-receive-address=127.0.0.1:{self.sst_port}",
            # Its temporary tables (a GROUP BY over the votes goes to disk) in its own
            # directory: /tmp is the machine's, and others clean it.
            f"--tmpdir={self.directory / 'tmp'}",
            # What Galera requires (docs/operations.md says why).
            "--binlog-format=ROW",
            "--innodb-autoinc-lock-mode=2",
            "--default-storage-engine=InnoDB",
            *(["--wsrep-new-cluster"] if self.bootstrap else []),
        ]

    def prepare(self) -> None:
        """The first node gets a fresh data directory; the others an empty one, filled by a
        state transfer from a member. As root, the joiner's rsync daemon runs as ``nobody``
        (rsync's default), so the empty directory is given to it."""
        (self.directory / "tmp").mkdir()
        if self.bootstrap:
            self.install()
            return
        data = self.directory / "data"
        data.mkdir()
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            os.chown(data, nobody.pw_uid, nobody.pw_gid)

    def status(self) -> dict[str, str]:
        """The node's wsrep status variables (and ``read_only``), by name; empty if it is down."""
        try:
            conn = self.admin(connect_timeout=1, read_timeout=5)
        except pymysql.err.MySQLError:
            return {}
        try:
            with conn.cursor() as cur:
                cur.execute("SHOW GLOBAL STATUS LIKE 'wsrep%'")
                return {str(k): str(v) for k, v in cur.fetchall()}
        except pymysql.err.MySQLError:
            return {}
        finally:
            conn.close()

    def serves(self) -> bool:
        """Synced and in the Primary Component: it takes writes."""
        state = self.status()
        return (
            state.get("wsrep_cluster_status") == "Primary"
            and state.get("wsrep_local_state") == SYNCED
            and state.get("wsrep_ready") == "ON"
        )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class ClusterCheck(Server):
    """``deploy/galera/clustercheck.py`` for one node, logging in over its socket as root."""

    node: GaleraNode | None = None

    def command(self) -> list[str]:
        assert self.node is not None
        return [
            sys.executable,
            str(CLUSTERCHECK),
            f"--listen=127.0.0.1:{self.port}",
            f"--socket={self.node.socket_path}",
            "--user=root",
        ]

    def answer(self) -> tuple[int, str]:
        """The responder's status code and body; (0, why) when it does not answer."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/", timeout=5) as resp:
                return int(resp.status), resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError as exc:
            return 0, str(exc)

    def answers(self) -> bool:
        return self.answer()[0] != 0


@dataclass
class HAProxy(Server):
    """``haproxy -f deploy/galera/haproxy.cfg``, its addresses set by the environment."""

    nodes: list[GaleraNode] = field(default_factory=list)
    checks: list[ClusterCheck] = field(default_factory=list)

    @property
    def stats_socket(self) -> Path:
        return self.directory / "haproxy.sock"

    def environment(self) -> dict[str, str]:
        env = {
            "HAPROXY_STATS_SOCKET": str(self.stats_socket),
            "GALERA_LISTEN": f"127.0.0.1:{self.port}",
        }
        for i, (node, check) in enumerate(zip(self.nodes, self.checks, strict=True), start=1):
            env[f"GALERA_DB{i}"] = f"127.0.0.1:{node.port}"
            env[f"GALERA_DB{i}_CHECK"] = str(check.port)
        return env

    def command(self) -> list[str]:
        return ["haproxy", "-db", "-f", str(HAPROXY_CFG)]

    def spawn(self) -> None:
        with (self.directory / f"{self.name}.log").open("ab") as log:
            self.proc = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
                env={**os.environ, **self.environment()},
            )

    def ask(self, command: str) -> str:
        """One command on the stats socket (``show stat``, ``show servers state``, ...)."""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(str(self.stats_socket))
            sock.sendall(command.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def servers(self) -> dict[str, str]:
        """Each server's state as HAProxy sees it: ``UP``, ``DOWN``, ``UP 1/2``, ..."""
        text = self.ask("show stat").lstrip("# ")
        return {
            row["svname"]: row["status"]
            for row in csv.DictReader(text.splitlines())
            if row.get("pxname") == "galera" and row["svname"] not in ("FRONTEND", "BACKEND")
        }

    def answers(self) -> bool:
        try:
            return "db1" in self.servers()
        except OSError:
            return False

    def settings(self) -> dict[str, float]:
        """The check timings the shipped file sets (seconds, and counts)."""
        text = HAPROXY_CFG.read_text()
        found = re.search(r"^\s*default-server\s+(.*)$", text, re.MULTILINE)
        check = re.search(r"^\s*timeout check\s+(\S+)", text, re.MULTILINE)
        assert found is not None, "haproxy.cfg sets no default-server"
        assert check is not None, "haproxy.cfg sets no timeout check"
        words = found.group(1).split()
        options = dict(zip(words[::2], words[1::2], strict=False))

        def seconds(value: str) -> float:
            return (
                float(value.removesuffix("ms")) / 1000
                if value.endswith("ms")
                else float(value.removesuffix("s"))
            )

        return {
            "inter_s": seconds(options["inter"]),
            "fastinter_s": seconds(options["fastinter"]),
            "downinter_s": seconds(options["downinter"]),
            "fall": float(options["fall"]),
            "rise": float(options["rise"]),
            "timeout_check_s": seconds(check.group(1)),
        }


@dataclass
class Galera:
    nodes: list[GaleraNode]
    checks: list[ClusterCheck]
    proxy: HAProxy

    @property
    def port(self) -> int:
        """Where clients connect: HAProxy."""
        return self.proxy.port

    def serving(self) -> list[GaleraNode]:
        return [n for n in self.nodes if n.alive() and n.serves()]

    def routed_to(self) -> GaleraNode | None:
        """The node a new connection through HAProxy reaches, or None when it is refused."""
        try:
            conn = pymysql.connect(
                host="127.0.0.1", port=self.port, user="root", connect_timeout=2, read_timeout=5
            )
        except pymysql.err.MySQLError:
            return None
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT @@port")
                row = cur.fetchone()
        except pymysql.err.MySQLError:
            return None
        finally:
            conn.close()
        assert row is not None
        return next((n for n in self.nodes if n.port == int(row[0])), None)

    def stop(self) -> None:
        stop_all([*self.nodes, *self.checks, self.proxy])


def reader(node: GaleraNode, **options: Any) -> pymysql.connections.Connection[Any]:
    """A root connection to ``node`` whose reads see every transaction the cluster committed
    before them (``wsrep_sync_wait``), wherever it was committed."""
    conn = node.admin(**options)
    with conn.cursor() as cur:
        cur.execute("SET SESSION wsrep_sync_wait = 1")
    return conn


@contextmanager
def galera_cluster(directory: Path, *, size: int = 3) -> Iterator[Galera]:
    """``size`` nodes, each Synced in one Primary Component, a responder beside each, HAProxy
    in front, every server UP in HAProxy, before the block runs; every process killed after."""
    with ExitStack() as stack:
        started: list[Server] = []
        stack.callback(stop_all, started)
        peers = [free_port() for _ in range(size)]
        nodes = []
        for i in range(size):
            (directory / f"db{i + 1}").mkdir(parents=True)
            node = GaleraNode(
                f"db{i + 1}",
                directory / f"db{i + 1}",
                peers=peers,
                gcomm_port=peers[i],
                bootstrap=i == 0,
            )
            node.prepare()
            nodes.append(node)
        first, *joiners = nodes
        first.start_blocking()
        started.append(first)
        wait_for(first.serves, "the first node to bootstrap the cluster")
        # The joiners start together: one takes the state transfer, the other waits its turn.
        for node in joiners:
            node.spawn()
            started.append(node)
        deadline = time.monotonic() + 120
        while not all(n.serves() for n in joiners):
            dead = [n.name for n in joiners if not n.alive()]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(f"{dead or 'nodes'} did not join: see {directory}")
            time.sleep(0.2)
        # Later restarts of the first node join the cluster, not a new one.
        first.bootstrap = False
        checks = []
        for node in nodes:
            check = ClusterCheck(f"{node.name}-check", node.directory, node=node)
            check.start_blocking(timeout_s=30)
            started.append(check)
            checks.append(check)
        proxy = HAProxy("haproxy", directory, nodes=nodes, checks=checks)
        proxy.start_blocking(timeout_s=30)
        started.append(proxy)
        cluster = Galera(nodes, checks, proxy)
        wait_for(
            lambda: all(s == "UP" for s in proxy.servers().values()),
            "HAProxy to see every node UP",
        )
        yield cluster
