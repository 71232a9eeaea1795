"""Replicated Redis of the tests' own: a primary with replicas and Sentinels, and a Cluster.

``sentinel_group`` starts a primary, replicas and Sentinels; ``redis_cluster`` starts a Redis
Cluster (``redis-cli --cluster create``). Built from ``servers``' ``RedisServer``; every
process listens on loopback only and is killed when its block ends.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from tests.support.servers import RedisServer, Server, command, free_port, pings, stop_all
from tests.support.waiting import wait_for

# A primary starts a replica's full sync at once (Redis waits 5 s for more replicas by default).
QUICK_SYNC = ("--repl-diskless-sync-delay", "0")
# How long the failover tests' producers wait for a replica to acknowledge a push (WAIT).
PUSH_WAIT_MS = 200


def primary_server(name: str, directory: Path) -> RedisServer:
    """A Redis server (not started yet, ``directory`` made) that its replicas sync from at once."""
    directory.mkdir(parents=True)
    return RedisServer(name, directory, extra=list(QUICK_SYNC))


def replica_server(name: str, directory: Path, primary: RedisServer) -> RedisServer:
    """A Redis server (not started yet, ``directory`` made) that replicates ``primary``."""
    directory.mkdir(parents=True)
    return RedisServer(
        name, directory, extra=["--replicaof", "127.0.0.1", str(primary.port), *QUICK_SYNC]
    )


@dataclass
class SentinelServer(Server):
    """``redis-server sentinel.conf --sentinel`` watching one primary as ``master``."""

    primary_port: int = 0
    master: str = "mymaster"
    down_after_ms: int = 1000
    password: str | None = None  # the Sentinels' own (requirepass, and between Sentinels)

    def command(self) -> list[str]:
        conf = self.directory / f"{self.name}.conf"
        if not conf.exists():  # Sentinel rewrites its file: a restart keeps what it learned
            auth = (
                f"requirepass {self.password}\nsentinel sentinel-pass {self.password}\n"
                if self.password
                else ""
            )
            conf.write_text(
                f"port {self.port}\n"
                "bind 127.0.0.1\n"
                f"dir {self.directory}\n"
                f"sentinel monitor {self.master} 127.0.0.1 {self.primary_port} 2\n"
                f"sentinel down-after-milliseconds {self.master} {self.down_after_ms}\n"
                f"sentinel failover-timeout {self.master} 10000\n"
                f"sentinel parallel-syncs {self.master} 2\n" + auth
            )
            conf.chmod(0o600)
        return ["redis-server", str(conf), "--sentinel", *self.extra]

    def client(self) -> redis.Redis:
        return redis.Redis(
            port=self.port, password=self.password, socket_timeout=2, socket_connect_timeout=1
        )

    def answers(self) -> bool:
        return pings(self.client())

    def primary(self) -> tuple[str, int] | None:
        client = self.client()
        try:
            found: Any = client.sentinel_get_master_addr_by_name(self.master)
        except redis.RedisError:
            return None
        finally:
            client.close()
        return (str(found[0]), int(found[1])) if found else None

    def _known(self, field: str) -> int:
        client = self.client()
        try:
            state: Any = client.sentinel_master(self.master)
        except redis.RedisError:
            return 0
        finally:
            client.close()
        return int(state.get(field, 0))

    def replicas_known(self) -> int:
        return self._known("num-slaves")

    def sentinels_known(self) -> int:
        return self._known("num-other-sentinels")


@dataclass
class SentinelGroup:
    primary: RedisServer
    replicas: list[RedisServer]
    sentinels: list[SentinelServer]
    master: str

    @property
    def addresses(self) -> str:
        """``REDIS_SENTINELS``."""
        return ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)

    def servers(self) -> list[RedisServer]:
        return [self.primary, *self.replicas]

    def current_primary(self) -> RedisServer | None:
        """The data server every answering Sentinel names as primary, if they agree."""
        named = {s.primary() for s in self.sentinels if s.proc and s.proc.poll() is None}
        if len(named) != 1:
            return None
        (address,) = named
        if address is None:
            return None
        return next((r for r in self.servers() if r.port == address[1]), None)

    def in_sync(self, primary: RedisServer, replicas: int) -> bool:
        """``primary`` has ``replicas`` replicas online, and every Sentinel knows them."""
        try:
            online = primary.replicas_online()
        except redis.RedisError:
            return False
        return online >= replicas and all(
            s.replicas_known() >= replicas and s.sentinels_known() >= len(self.sentinels) - 1
            for s in self.sentinels
            if s.proc and s.proc.poll() is None
        )


@contextmanager
def sentinel_group(
    directory: Path,
    *,
    replicas: int = 2,
    sentinels: int = 3,
    master: str = "mymaster",
    sentinel_password: str | None = None,
) -> Iterator[SentinelGroup]:
    """A primary, ``replicas`` replicas and ``sentinels`` Sentinels (quorum 2, a primary is
    down after 1 s; ``sentinel_password`` their own), all in sync before the block runs; every
    process killed after it."""
    with ExitStack() as stack:
        started: list[Server] = []
        stack.callback(stop_all, started)
        primary = primary_server("primary", directory / "primary")
        primary.start_blocking()
        started.append(primary)
        copies = []
        for i in range(replicas):
            replica = replica_server(f"replica{i}", directory / f"replica{i}", primary)
            replica.start_blocking()
            started.append(replica)
            copies.append(replica)
        watchers = []
        for i in range(sentinels):
            (directory / f"sentinel{i}").mkdir()
            watcher = SentinelServer(
                f"sentinel{i}",
                directory / f"sentinel{i}",
                primary_port=primary.port,
                master=master,
                password=sentinel_password,
            )
            watcher.start_blocking()
            started.append(watcher)
            watchers.append(watcher)
        group = SentinelGroup(primary, copies, watchers, master)
        wait_for(lambda: group.in_sync(primary, replicas), "replicas and Sentinels to meet")
        yield group


@dataclass
class ClusterNodes:
    nodes: list[RedisServer]

    @property
    def entry(self) -> RedisServer:
        return self.nodes[0]

    def ok(self) -> bool:
        """Every answering node says the cluster is ok and they agree on who serves what."""
        maps = set()
        for node in self.nodes:
            if node.proc is None or node.proc.poll() is not None:
                continue
            try:
                if node.info("cluster").get("cluster_enabled") != "1":
                    return False
                client = node.client()
                try:
                    state = command(client, "CLUSTER", "INFO")
                    slots = command(client, "CLUSTER", "SLOTS")
                finally:
                    client.close()
            except redis.RedisError:
                return False
            text = state.decode() if isinstance(state, bytes) else str(state)
            if "cluster_state:ok" not in text:
                return False
            maps.add(tuple(sorted((int(r[0]), int(r[1]), int(r[2][1])) for r in slots)))
        return len(maps) == 1

    def node_id(self, node: RedisServer) -> str:
        client = node.client()
        try:
            return str(command(client, "CLUSTER", "MYID").decode())
        finally:
            client.close()

    def owner(self, slot: int) -> RedisServer:
        """The primary serving ``slot``, as the first answering node sees it."""
        for node in self.nodes:
            if node.proc is None or node.proc.poll() is not None:
                continue
            client = node.client()
            try:
                for start, end, primary, *_ in command(client, "CLUSTER", "SLOTS"):
                    if int(start) <= slot <= int(end):
                        port = int(primary[1])
                        return next(n for n in self.nodes if n.port == port)
            finally:
                client.close()
        raise LookupError(slot)


@contextmanager
def redis_cluster(
    directory: Path, *, primaries: int = 3, replicas: int = 0, node_timeout_ms: int = 1000
) -> Iterator[ClusterNodes]:
    """A Redis Cluster of ``primaries`` primaries (``replicas`` each), slots spread by
    ``redis-cli --cluster create``; ok and agreed on before the block runs."""
    with ExitStack() as stack:
        nodes: list[RedisServer] = []
        stack.callback(stop_all, nodes)
        for i in range(primaries * (1 + replicas)):
            (directory / f"node{i}").mkdir(parents=True)
            node = RedisServer(
                f"node{i}",
                directory / f"node{i}",
                extra=[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    str(directory / f"node{i}" / "nodes.conf"),
                    "--cluster-node-timeout",
                    str(node_timeout_ms),
                    # The bus is on port + 10000 unless told: a free port may be too high.
                    "--cluster-port",
                    str(free_port()),
                    *QUICK_SYNC,
                ],
            )
            node.start_blocking()
            nodes.append(node)
        subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *(f"127.0.0.1:{n.port}" for n in nodes),
                "--cluster-replicas",
                str(replicas),
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        cluster = ClusterNodes(nodes)
        wait_for(cluster.ok, "the cluster to agree")
        yield cluster
