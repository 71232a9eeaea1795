"""MariaDB Galera Cluster behind HAProxy: a node lost mid-drain, and quorum lost then regained.

Three nodes, a clustercheck responder beside each and HAProxy with the shipped configuration
(``tests.support.galera``: deploy/galera/), on free loopback ports. The worker is the real one, a
subprocess whose MYSQL_HOST/MYSQL_PORT is HAProxy; its queue is on the shared Redis. An
independent check counts the rows per ``voter_id`` with the tests' own PyMySQL client: every
pushed vote stored exactly once.

- **Node lost**: 200,000 votes queued; once a third are stored, the node the worker writes to
  is SIGKILLed. Galera's view change (its default ``evs.suspect_timeout``, 5 s) holds every
  commit; HAProxy takes the node out; the worker commits on the next node within 10 s.
- **Quorum lost**: votes pushed at a steady rate; the two backup nodes are SIGKILLed, the last
  one leaves the Primary Component (it refuses every write), HAProxy takes it out within its
  check timings, the worker waits (``/ready`` 503, ``/live`` 200) and no row is written. Then the
  operator's recovery (``pc.bootstrap=YES`` on the survivor) makes it Primary again, and the
  worker commits within 5 s.

The times measured are printed at the end of the run (``FIGURES``).
"""

from __future__ import annotations

import re
import shutil
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymysql
import pytest
import redis
import trio

from tests.support.figures import FIGURES
from tests.support.galera import NEEDS, Galera, GaleraNode, galera_cluster, reader
from tests.support.servers import free_port, need
from tests.support.services import Services
from tests.support.stores import push, stored, votes
from tests.support.waiting import wait_until
from tests.support.workers import tagged_env, worker_process
from trio_worker.config import Config, from_env

NODE_LOSS_VOTES = 200_000
# The promises: a commit within 10 s of losing the node written to, and within 5 s of the
# cluster having a Primary Component again.
FIRST_COMMIT_AFTER_KILL_S = 10.0
RESUMED_AFTER_PRIMARY_S = 5.0
QUORUM_RATE_PER_S = 2000
OUTAGE_HELD_S = 4.0  # how long the test keeps the cluster without quorum once the worker waits

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def cluster(short_dir: Path, tag: str) -> Iterator[Galera]:
    need(*NEEDS)
    directory = short_dir / f"galera-{tag}"
    try:
        with galera_cluster(directory) as found:
            yield found
    finally:
        shutil.rmtree(directory, ignore_errors=True)  # three data directories


def worker_config(services: Services, cluster: Galera, tag: str) -> Config:
    """The worker's settings: the shared Redis, MySQL through HAProxy, the default batch."""
    return from_env(
        {
            **tagged_env(tag),
            "REDIS_HOST": services.redis_host,
            "REDIS_PORT": str(services.redis_port),
            "MYSQL_HOST": "127.0.0.1",
            "MYSQL_PORT": str(cluster.port),
            "MYSQL_USER": "root",
            "MYSQL_PASSWORD": "",
            "PORT": str(free_port()),
            "BATCH_SIZE": "1000",
        }
    )


@pytest.fixture
def queue_client(services: Services, tag: str) -> Iterator[redis.Redis]:
    """The tests' own client of the shared Redis; the test's keys are removed after."""
    client = redis.Redis(host=services.redis_host, port=services.redis_port, socket_timeout=10)
    yield client
    keys = list(client.scan_iter(match=f"tw{tag}*"))
    if keys:
        client.delete(*keys)
    client.close()


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def drained(client: redis.Redis, queue: str) -> bool:
    """Nothing queued, and no in-flight list holds a vote."""
    if client.llen(queue):
        return False
    return all(client.llen(k) == 0 for k in client.smembers(f"{queue}:inflight"))


@dataclass
class RowCount:
    """Samples ``COUNT(*)`` of ``votes`` on one node every 50 ms, in a thread of its own.

    ``dirty``: read on a node without quorum too (``wsrep_dirty_reads``); otherwise reads wait
    for every transaction the cluster committed before them (``wsrep_sync_wait``)."""

    node: GaleraNode
    database: str
    dirty: bool = False
    samples: list[tuple[float, int]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def connect(self) -> pymysql.connections.Connection[Any]:
        if self.dirty:
            conn = self.node.admin(connect_timeout=2, read_timeout=30)
            with conn.cursor() as cur:
                cur.execute("SET SESSION wsrep_dirty_reads = ON")
            return conn
        return reader(self.node, connect_timeout=2, read_timeout=30)

    def run(self) -> None:
        conn = None
        while not self.stop.is_set():
            try:
                if conn is None:
                    conn = self.connect()
                with conn.cursor() as cur:
                    cur.execute(f"SELECT COUNT(*) FROM `{self.database}`.votes")
                    row = cur.fetchone()
                assert row is not None
                self.samples.append((time.monotonic(), int(row[0])))
            except pymysql.err.ProgrammingError:
                self.samples.append((time.monotonic(), 0))  # no table yet
            except pymysql.err.MySQLError:
                if conn is not None:
                    conn.close()
                conn = None
            self.stop.wait(0.05)
        if conn is not None:
            conn.close()

    @property
    def last(self) -> int:
        return self.samples[-1][1] if self.samples else 0

    def first_above(self, count: int) -> float | None:
        """When a sample first counted more than ``count`` rows."""
        return next((t for t, n in self.samples if n > count), None)

    def between(self, start: float, end: float) -> set[int]:
        return {n for t, n in self.samples if start <= t <= end}


async def first_times(
    conditions: dict[str, Callable[[], bool]], timeout_s: float = 60
) -> dict[str, float]:
    """Poll the conditions every 50 ms until each has held; when each first did."""
    seen: dict[str, float] = {}
    with trio.move_on_after(timeout_s):
        while len(seen) < len(conditions):
            for name, condition in conditions.items():
                if name not in seen and condition():
                    seen[name] = time.monotonic()
            await trio.sleep(0.05)
        return seen
    pytest.fail(f"timed out after {timeout_s}s waiting for {set(conditions) - set(seen)}")


def errors_seen(log: Path) -> str:
    """The distinct MySQL errors the worker logged (``mysql unavailable``, once per change)."""
    found = re.findall(r"mysql unavailable error=MySQL at [^:]+:\d+: (.*)", log.read_text())
    return " | ".join(dict.fromkeys(e.strip() for e in found)) or "none"


async def test_a_node_lost_mid_drain_loses_no_vote_and_stores_none_twice(
    cluster: Galera, services: Services, tag: str, queue_client: redis.Redis, tmp_path: Path
) -> None:
    config = worker_config(services, cluster, tag)
    ids = [f"n{i}" for i in range(NODE_LOSS_VOTES)]
    await trio.to_thread.run_sync(push, queue_client, config.vote_queue, ids)
    # Counted on a node that stays: the first backup takes the writes after the failover.
    active, survivor, counted = cluster.nodes
    assert cluster.routed_to() is active
    rows = RowCount(counted, config.mysql_database)
    log = tmp_path / "worker.log"
    figures: dict[str, Any] = {}
    async with worker_process(config, log) as proc, trio.open_nursery() as nursery:
        nursery.start_soon(trio.to_thread.run_sync, rows.run)
        try:
            await wait_until(
                lambda: rows.last >= NODE_LOSS_VOTES // 3, timeout_s=120, what="a third stored"
            )
            assert active.proc is not None
            active.crash()
            killed = time.monotonic()
            # Every vote taken so far was taken before the kill: more rows than that means a
            # commit after it.
            taken = NODE_LOSS_VOTES - int(queue_client.llen(config.vote_queue))
            figures["stored_at_kill"] = rows.last
            seen = await first_times(
                {
                    "haproxy_out_s": lambda: cluster.proxy.servers()["db1"].startswith("DOWN"),
                    "view_change_s": lambda: survivor.status().get("wsrep_cluster_size") == "2",
                }
            )
            figures.update({name: at - killed for name, at in seen.items()})
            await wait_until(
                lambda: rows.first_above(taken) is not None, timeout_s=60, what="a new commit"
            )
            first = rows.first_above(taken)
            assert first is not None
            figures["first_commit_s"] = first - killed
            await wait_until(
                lambda: rows.last >= NODE_LOSS_VOTES, timeout_s=120, what="every vote stored"
            )
            figures["last_vote_s"] = time.monotonic() - killed
            await wait_until(lambda: drained(queue_client, config.vote_queue), what="the drain")
        finally:
            rows.stop.set()
        proc.send_signal(signal.SIGTERM)
        with trio.fail_after(30):
            assert await proc.wait() == 0, log.read_text()[-2000:]
    assert cluster.routed_to() is survivor
    with reader(survivor) as conn:
        counts = stored(conn, config.mysql_database)
    twice = sorted(v for v, n in counts.items() if n != 1)
    missing = sorted(set(ids) - set(counts))
    assert twice == [], f"stored twice: {twice[:10]}"
    assert missing == [], f"lost: {missing[:10]} ({len(missing)} in all)"
    assert set(counts) == set(ids)
    figures.update(stored=len(counts), duplicates=len(twice), lost=len(missing))
    figures["mysql_errors"] = errors_seen(log)
    FIGURES.append(("galera node lost", figures))
    assert figures["first_commit_s"] <= FIRST_COMMIT_AFTER_KILL_S, figures


@dataclass
class Producer:
    """Pushes unique votes at a steady rate, in chunks of 100, until stopped."""

    client: redis.Redis
    queue: str
    pushed: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        chunk, started = 100, time.monotonic()
        n = 0
        try:
            while not self.stop.is_set():
                ids = [f"q{i}" for i in range(n, n + chunk)]
                self.client.lpush(self.queue, *votes(ids))
                self.pushed += ids
                n += chunk
                self.stop.wait(max(0.0, started + n / QUORUM_RATE_PER_S - time.monotonic()))
        finally:
            self.done.set()


async def test_quorum_lost_the_worker_waits_then_resumes_once_the_cluster_is_primary(
    cluster: Galera, services: Services, tag: str, queue_client: redis.Redis, tmp_path: Path
) -> None:
    config = worker_config(services, cluster, tag)
    last, *others = cluster.nodes
    assert cluster.routed_to() is last
    settings = cluster.proxy.settings()
    # The longest HAProxy can take to mark a node down once its check fails: the next check
    # (``inter``), then ``fall - 1`` more at ``fastinter``, each allowed ``timeout check``.
    out_within = (
        settings["inter_s"]
        + (settings["fall"] - 1) * settings["fastinter_s"]
        + settings["fall"] * settings["timeout_check_s"]
    )
    producer = Producer(queue_client, config.vote_queue)
    rows = RowCount(last, config.mysql_database, dirty=True)
    log = tmp_path / "worker.log"
    url = f"http://127.0.0.1:{config.http_port}"
    figures: dict[str, Any] = {"haproxy_bound_s": out_within}
    async with worker_process(config, log) as proc, trio.open_nursery() as nursery:
        nursery.start_soon(trio.to_thread.run_sync, producer.run)
        nursery.start_soon(trio.to_thread.run_sync, rows.run)
        try:
            await wait_until(lambda: rows.last >= 5000, timeout_s=60, what="votes flowing")
            for node in others:
                node.crash()
            killed = time.monotonic()
            await wait_until(
                lambda: last.status().get("wsrep_cluster_status") == "non-Primary",
                what="the last node to leave the Primary Component",
            )
            no_quorum = time.monotonic()
            figures["non_primary_s"] = no_quorum - killed
            await wait_until(
                lambda: cluster.proxy.servers()["db1"].startswith("DOWN"),
                what="HAProxy to take the node without quorum out",
            )
            out = time.monotonic()
            figures["haproxy_out_s"] = out - no_quorum
            assert out - no_quorum <= out_within, figures
            # HAProxy sends no connection anywhere: every node is out.
            assert cluster.proxy.servers() == {"db1": "DOWN", "db2": "DOWN", "db3": "DOWN"}
            assert await trio.to_thread.run_sync(cluster.routed_to) is None
            await wait_until(lambda: http_status(f"{url}/ready") == 503, what="/ready 503")
            waiting = time.monotonic()
            figures["ready_503_s"] = waiting - no_quorum
            # The worker waits: alive, not ready, MySQL reported down, nothing written.
            while time.monotonic() < waiting + OUTAGE_HELD_S:
                assert http_status(f"{url}/live") == 200
                assert http_status(f"{url}/ready") == 503
                assert http_status(f"{url}/health") == 503
                await trio.sleep(0.2)
            # The operator's recovery: the survivor becomes the Primary Component on its own.
            with last.admin() as conn, conn.cursor() as cur:
                cur.execute("SET GLOBAL wsrep_provider_options = 'pc.bootstrap=YES'")
            await wait_until(lambda: last.serves(), what="the node to be Primary again")
            primary = time.monotonic()
            held = rows.between(no_quorum, primary)
            assert held, "no row count read while the node was without quorum"
            assert len(held) == 1, f"rows written without quorum: counts {sorted(held)}"
            (count,) = held
            figures["outage_s"] = primary - no_quorum
            await wait_until(
                lambda: cluster.proxy.servers()["db1"] == "UP", what="HAProxy to put it back"
            )
            figures["haproxy_back_s"] = time.monotonic() - primary
            await wait_until(lambda: rows.first_above(count) is not None, what="a new commit")
            first = rows.first_above(count)
            assert first is not None
            figures["resumed_s"] = first - primary
            await wait_until(lambda: http_status(f"{url}/ready") == 200, what="/ready 200")
            producer.stop.set()
            await wait_until(producer.done.is_set, what="the producer to stop")
            await wait_until(
                lambda: drained(queue_client, config.vote_queue), timeout_s=60, what="the drain"
            )
        finally:
            producer.stop.set()
            rows.stop.set()
        proc.send_signal(signal.SIGTERM)
        with trio.fail_after(30):
            assert await proc.wait() == 0, log.read_text()[-2000:]
    with reader(last) as conn:
        counts = stored(conn, config.mysql_database)
    twice = sorted(v for v, n in counts.items() if n != 1)
    missing = sorted(set(producer.pushed) - set(counts))
    assert twice == [], f"stored twice: {twice[:10]}"
    assert missing == [], f"lost: {missing[:10]} ({len(missing)} in all)"
    assert set(counts) == set(producer.pushed)
    figures.update(pushed=len(producer.pushed), duplicates=len(twice), lost=len(missing))
    figures["mysql_errors"] = errors_seen(log)
    FIGURES.append(("galera quorum lost", figures))
    assert figures["resumed_s"] <= RESUMED_AFTER_PRIMARY_S, figures
