"""``just bench``: the worker's drain rate, latency and memory, beside MariaDB's own ceiling.

Everything is measured in one run, on this machine, against the local Redis and MariaDB, so the
ratios (drain / ceiling, drain / seed design) hold even when the absolute numbers move with the
machine's load. The worker under test is the real one (``python -m trio_worker run``, a
subprocess with default settings unless a stage says otherwise); only the two baselines are small
loops here.

Stages:
- ceiling: the backlog's rows as prebuilt 5,000-row INSERT statements, one commit each;
- seed design: BRPOP + one autocommitted INSERT per vote, on a smaller N;
- drain: a backlog of ``--count`` votes, votes/s from the first commit to the last, peak RSS;
- latency: push→commit at steady offered rates, measured from outside the worker;
- sweep: drain throughput and push→commit p99 for each BATCH_SIZE.

How the worker is watched without slowing it: during the drain, one connection reads ``MAX(id)``
until the first commit shows, then Redis's ``LLEN`` of the backlog every 2 ms, and only once the
backlog is all taken the ledger's ``SUM(votes)`` (exact) until the last batch is in. For
latency, each voter_id carries its push time (CLOCK_MONOTONIC, shared by all processes); one
connection fetches the rows above the highest id seen so far every ~1 ms.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import psutil
import pymysql
import redis

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT))

from trio_worker.mysql.schema import VOTES_TABLE  # noqa: E402
from trio_worker.mysql.sql import SESSION  # noqa: E402
from trio_worker.mysql.sql import insert_votes as values_sql  # noqa: E402

DB = "trio_worker_bench"
QUEUE = "trio_worker_bench"
CEILING_ROWS_PER_STATEMENT = 5000
WARMUP_S = 1.0  # latency samples pushed in the first second of each rate are left out


# --------------------------------------------------------------------------------- helpers


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def progress(text: str) -> None:
    if sys.stderr.isatty():
        print(f"\r\033[K{text}", end="", file=sys.stderr, flush=True)


def done_progress() -> None:
    if sys.stderr.isatty():
        print("\r\033[K", end="", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Stores:
    redis_host: str
    redis_port: int
    mysql_host: str
    mysql_port: int
    mysql_user: str
    mysql_password: str

    def sql(self, database: str | None = DB, *, autocommit: bool = True) -> Any:
        return pymysql.connect(
            host=self.mysql_host,
            port=self.mysql_port,
            user=self.mysql_user,
            password=self.mysql_password,
            database=database,
            autocommit=autocommit,
            charset="utf8mb4",
        )

    def redis(self) -> redis.Redis:
        return redis.Redis(host=self.redis_host, port=self.redis_port)


def reset(stores: Stores, *, table: bool = False) -> None:
    """An empty bench database (with ``votes`` when a baseline needs it) and no bench keys."""
    with contextlib.closing(stores.sql(None)) as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{DB}`")
        cur.execute(f"CREATE DATABASE `{DB}`")
        if table:
            cur.execute(f"USE `{DB}`")
            cur.execute(VOTES_TABLE)
    r = stores.redis()
    keys = list(r.scan_iter(match=f"{QUEUE}*", count=1000))
    if keys:
        r.delete(*keys)
    r.close()


def cleanup(stores: Stores) -> None:
    reset(stores)
    with contextlib.closing(stores.sql(None)) as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{DB}`")


def vote(voter_id: str, i: int) -> bytes:
    return orjson.dumps({"voter_id": voter_id, "vote": "ab"[i & 1]})


def push_backlog(stores: Stores, n: int, prefix: str) -> None:
    """LPUSH ``n`` votes, as producers do, in pipelined chunks."""
    r = stores.redis()
    chunk = 10_000
    for start in range(0, n, chunk):
        msgs = [vote(f"{prefix}{i}", i) for i in range(start, min(n, start + chunk))]
        r.lpush(QUEUE, *msgs)
        progress(f"  pushing backlog: {start + len(msgs):,}/{n:,}")
    done_progress()
    r.close()


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s)) - 1))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------------------------- worker


def listeners(ports: dict[str, int]) -> dict[str, psutil.Process]:
    """The local processes listening on these ports (other Redis/MariaDB may be running)."""
    found: dict[str, psutil.Process] = {}
    with contextlib.suppress(psutil.Error):
        for conn in psutil.net_connections("tcp"):
            for name, port in ports.items():
                if conn.status == "LISTEN" and conn.laddr.port == port and conn.pid:
                    found[name] = psutil.Process(conn.pid)
    return found


class Worker:
    """The real worker as a subprocess: ``python -m trio_worker run``."""

    def __init__(self, stores: Stores, batch_size: int | None, log_path: Path) -> None:
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "MYSQL_"))}
        env.update(
            REDIS_HOST=stores.redis_host,
            REDIS_PORT=str(stores.redis_port),
            MYSQL_HOST=stores.mysql_host,
            MYSQL_PORT=str(stores.mysql_port),
            MYSQL_USER=stores.mysql_user,
            MYSQL_PASSWORD=stores.mysql_password,
            MYSQL_DATABASE=DB,
            VOTE_QUEUE=QUEUE,
            HOST="127.0.0.1",
            PORT=str(self.port),
            LOG_FORMAT="json",
            PYTHONPATH=str(ROOT),
        )
        if batch_size is not None:
            env["BATCH_SIZE"] = str(batch_size)
        self.log = log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "trio_worker", "run"],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.ps = psutil.Process(self.proc.pid)
        self.servers = listeners({"redis": stores.redis_port, "mariadb": stores.mysql_port})

    def wait_ready(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        url = f"http://127.0.0.1:{self.port}/ready"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"worker exited with {self.proc.returncode}; see {self.log.name}")
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
            time.sleep(0.05)
        raise SystemExit("worker not ready in time")

    def rss_mb(self) -> float:
        return float(self.ps.memory_info().rss) / 2**20

    def peak_rss_mb(self) -> float:
        """VmHWM: the kernel's own high-water mark of the process's resident memory."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.log.close()
        return rc


class Watcher:
    """One connection that reads how far the worker got, cheaply."""

    def __init__(self, stores: Stores) -> None:
        self.conn = stores.sql()
        self.cur = self.conn.cursor()

    def close(self) -> None:
        self.conn.close()

    def _one(self, query: str) -> int:
        try:
            self.cur.execute(query)
        except pymysql.err.ProgrammingError:  # the worker has not created the table yet
            return 0
        row = self.cur.fetchone()
        return int(row[0] or 0) if row else 0

    def max_id(self) -> int:
        return self._one("SELECT MAX(id) FROM votes")

    def committed(self) -> int:
        """Votes committed, exactly: the ledger row is in the same transaction as its votes."""
        return self._one("SELECT SUM(votes) FROM vote_batches")

    def new_rows(self, above: int) -> list[tuple[int, str]]:
        try:
            self.cur.execute("SELECT id, voter_id FROM votes WHERE id > %s", (above,))
        except pymysql.err.ProgrammingError:
            return []
        return list(self.cur.fetchall())


# ---------------------------------------------------------------------------------- stages


def ceiling(stores: Stores, n: int, step: int = CEILING_ROWS_PER_STATEMENT) -> dict[str, Any]:
    """MariaDB's own ingest rate: prebuilt ``step``-row INSERTs, one commit each."""
    reset(stores, table=True)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
    rows = [(f"c{i}", "ab"[i & 1], stamp) for i in range(n)]
    statements = [values_sql(rows[i : i + step]) for i in range(0, n, step)]
    del rows
    conn = stores.sql(autocommit=False)
    mariadb = listeners({"mariadb": stores.mysql_port}).get("mariadb")
    with conn.cursor() as cur:
        cur.execute(SESSION)
        conn.commit()
        cpu_before = sum(mariadb.cpu_times()[:2]) if mariadb else 0.0
        started = time.perf_counter()
        for k, statement in enumerate(statements):
            cur.execute(statement)
            conn.commit()
            if k % 20 == 0:
                progress(f"  ceiling: {min(n, (k + 1) * step):,}/{n:,}")
        elapsed = time.perf_counter() - started
        cpu = sum(mariadb.cpu_times()[:2]) - cpu_before if mariadb else float("nan")
    conn.close()
    done_progress()
    return {
        "votes": n,
        "seconds": elapsed,
        "votes_per_s": n / elapsed,
        "mariadb_cpu_us_per_vote": cpu / n * 1e6,
    }


def seed_design(stores: Stores, n: int) -> dict[str, Any]:
    """The seed's loop: BRPOP one vote, INSERT it with autocommit, repeat."""
    reset(stores, table=True)
    push_backlog(stores, n, "s")
    r = stores.redis()
    conn = stores.sql()
    with conn.cursor() as cur:
        started = time.perf_counter()
        for k in range(n):
            popped = r.brpop([QUEUE], timeout=5)
            if popped is None:
                raise SystemExit("seed design: queue ran dry")
            doc = orjson.loads(popped[1])
            cur.execute(
                "INSERT INTO votes (voter_id, vote, timestamp) VALUES (%s, %s, UTC_TIMESTAMP())",
                (doc["voter_id"], doc["vote"]),
            )
            if k % 500 == 0:
                progress(f"  seed design: {k:,}/{n:,}")
        elapsed = time.perf_counter() - started
    done_progress()
    conn.close()
    r.close()
    return {"votes": n, "seconds": elapsed, "votes_per_s": n / elapsed}


def drain(worker: Worker, watcher: Watcher, stores: Stores, n: int) -> dict[str, Any]:
    """Wait for the worker to commit a backlog of ``n``; votes/s from first commit to last.

    MariaDB is asked only until the first commit shows, and again once the backlog is all taken
    (the last few batches, a few ms): a query on ``votes`` every few ms, even ``MAX(id)``,
    contends with the worker's inserts for the table's hottest index page and cost a
    one-connection insert loop 2-15% of its rate here (docs/benchmarks.md). In between, progress
    is the backlog's length in Redis, which costs Redis microseconds.
    """
    procs = {"worker": worker.ps, **worker.servers}
    r = stores.redis()
    rss: list[tuple[float, float]] = []  # (fraction taken or committed, MB)
    timeout = time.monotonic() + 60 + n / 1000
    while not watcher.max_id():
        if time.monotonic() > timeout or worker.proc.poll() is not None:
            raise SystemExit("drain did not start")
        time.sleep(0.002)
    first_at, first_rows = time.perf_counter(), watcher.committed()
    cpu_before = {name: sum(p.cpu_times()[:2]) for name, p in procs.items()}
    next_rss = 0.0
    done = 0
    while True:
        now = time.perf_counter()
        queued = int(r.llen(QUEUE))
        # Once nothing is queued, the ledger (exact: its rows commit with their votes) says when
        # the last batch is in.
        done = n - queued if queued else watcher.committed()
        if now >= next_rss:
            rss.append((done / n, worker.rss_mb()))
            next_rss = now + 0.05
            progress(f"  drain: {done:,}/{n:,} {'taken' if queued else 'committed'}")
        if done >= n and not queued:
            last_at = now
            break
        if time.monotonic() > timeout or worker.proc.poll() is not None:
            raise SystemExit(f"drain did not finish: {done:,} of {n:,}")
        time.sleep(0.002)
    done_progress()
    r.close()
    committed = watcher.committed()
    if committed != n:
        raise SystemExit(f"drain: the ledger says {committed:,} committed, not {n:,}")
    elapsed = last_at - first_at
    rss.append((1.0, worker.rss_mb()))
    # CPU seconds per second of drain, from the first commit: who is the bottleneck.
    busy: dict[str, float] = {}
    for name, p in procs.items():
        with contextlib.suppress(psutil.Error):
            busy[name] = sum(p.cpu_times()[:2]) - cpu_before[name]
    return {
        "votes": n,
        "seconds": elapsed,
        "votes_per_s": (n - first_rows) / elapsed if elapsed > 0 else float("nan"),
        "peak_rss_mb": worker.peak_rss_mb(),
        "cpu_cores_busy": {name: round(sec / elapsed, 2) for name, sec in busy.items()},
        "worker_cpu_us_per_vote": busy["worker"] / (n - first_rows) * 1e6,
        "mariadb_cpu_us_per_vote": busy.get("mariadb", float("nan")) / (n - first_rows) * 1e6,
        "rss_mb_by_progress": {
            f"{q:.0%}": round(next((mb for f, mb in rss if f >= q), rss[-1][1]), 1)
            for q in (0.1, 0.25, 0.5, 0.75, 1.0)
        },
    }


def _produce(stores: Stores, rate: float, seconds: float) -> None:
    """A producer process: LPUSH at a steady rate; each voter_id starts with its push time."""
    r = stores.redis()
    total = int(rate * seconds)
    sent = 0
    started = time.monotonic()
    while sent < total:
        due = min(total, int((time.monotonic() - started) * rate) + 1)
        if due > sent:
            ns = time.monotonic_ns()
            r.lpush(QUEUE, *[vote(f"{ns}.{i}", i) for i in range(sent, due)])
            sent = due
        time.sleep(0.0005)
    r.close()


def latency(stores: Stores, watcher: Watcher, rate: float, seconds: float) -> dict[str, Any]:
    """Push→commit latency at a steady offered rate, seen from outside the worker."""
    total = int(rate * seconds)
    floor = watcher.max_id()  # every id up to here is seen (or belongs to earlier stages)
    above: set[int] = set()  # ids seen beyond ``floor`` (batches may commit out of order)
    gap_since: float | None = None
    samples: list[tuple[int, float]] = []  # (push time ns, latency ms)
    producer = multiprocessing.Process(target=_produce, args=(stores, rate, seconds))
    producer.start()
    deadline = time.monotonic() + seconds + 30
    last_progress = 0.0
    while len(samples) < total and time.monotonic() < deadline:
        seen_ns = time.monotonic_ns()  # rows returned were committed before this query's snapshot
        for row_id, voter_id in watcher.new_rows(floor):
            if row_id in above:
                continue
            above.add(row_id)
            pushed_ns = int(voter_id.partition(".")[0])
            samples.append((pushed_ns, (seen_ns - pushed_ns) / 1e6))
        while floor + 1 in above:
            floor += 1
            above.discard(floor)
        # An id that never shows up (a rolled-back statement) must not hold the floor forever.
        if not above:
            gap_since = None
        elif gap_since is None:
            gap_since = time.monotonic()
        elif time.monotonic() - gap_since > 2:
            floor, above, gap_since = max(above), set(), None
        if time.monotonic() - last_progress > 0.25:
            last_progress = time.monotonic()
            progress(f"  latency at {rate:,.0f}/s: {len(samples):,}/{total:,} committed")
        time.sleep(0.001)
    producer.join()
    done_progress()
    if len(samples) < total:
        raise SystemExit(f"latency at {rate}/s: only {len(samples)}/{total} votes committed")
    start_ns = min(p for p, _ in samples)
    end_ns = max(p for p, _ in samples)
    kept = [ms for p, ms in samples if p - start_ns >= WARMUP_S * 1e9]
    return {
        "offered_per_s": rate,
        "achieved_per_s": total / ((end_ns - start_ns) / 1e9) if end_ns > start_ns else rate,
        "votes": total,
        "p50_ms": pct(kept, 50),
        "p90_ms": pct(kept, 90),
        "p99_ms": pct(kept, 99),
        "max_ms": max(kept) if kept else float("nan"),
    }


@dataclass
class Session:
    """One worker process: a backlog drain, then steady rates."""

    batch_size: int | None
    backlog: int
    rates: list[float]
    seconds: float
    profile: Path | None = None
    result: dict[str, Any] = field(default_factory=dict)

    def run(self, stores: Stores) -> dict[str, Any]:
        reset(stores)
        push_backlog(stores, self.backlog, "d")
        worker = Worker(stores, self.batch_size, RESULTS / "worker.log.tmp")
        watcher = Watcher(stores)
        spy = None
        try:
            if self.profile is not None:
                py_spy = shutil.which("py-spy", path=Path(sys.executable).parent) or "py-spy"
                spy = subprocess.Popen(
                    [py_spy, "record", "--pid", str(worker.proc.pid), "--rate", "250",
                     "--format", "raw", "--output", str(self.profile), "--nonblocking"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )  # fmt: skip
            self.result["drain"] = drain(worker, watcher, stores, self.backlog)
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                spy.wait(timeout=30)
            self.result["latency"] = [latency(stores, watcher, r, self.seconds) for r in self.rates]
        finally:
            watcher.close()
            self.result["worker_exit_status"] = worker.stop()
        r = stores.redis()
        left = [k for k in r.scan_iter(match=f"{QUEUE}:inflight:*") if r.llen(k)]
        r.close()
        self.result["inflight_left"] = len(left)
        return self.result


# --------------------------------------------------------------------------------- report


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "load_avg_before": list(os.getloadavg()),
    }


def server_versions(stores: Stores) -> dict[str, str]:
    with contextlib.closing(stores.sql(None)) as conn, conn.cursor() as cur:
        cur.execute("SELECT VERSION(), @@innodb_flush_log_at_trx_commit")
        version, flush = cur.fetchone()
    r = stores.redis()
    info = r.info("server")
    r.close()
    return {
        "mariadb": str(version),
        "innodb_flush_log_at_trx_commit": str(flush),
        "redis": str(info.get("redis_version")),
    }


def table(res: dict[str, Any]) -> str:
    d, c, s = res["drain"], res["ceiling"], res["seed_design"]
    t = res["targets"]
    lines = [
        f"machine: {res['machine']['cpu']}, {res['machine']['cores']} cores; load avg "
        f"{' '.join(f'{x:.2f}' for x in res['machine']['load_avg_before'])} before, "
        f"{' '.join(f'{x:.2f}' for x in res['machine']['load_avg_after'])} after",
        "",
        f"{'measure':<44}{'value':>16}   target",
        f"{'ceiling (5,000-row INSERTs), votes/s':<44}{c['votes_per_s']:>16,.0f}   "
        f"mean of {c['before_drain']['votes_per_s']:,.0f} before and "
        f"{c['after_drain']['votes_per_s']:,.0f} after the drain",
        f"{'MariaDB alone, 1,000-row INSERTs, votes/s':<44}"
        f"{res['ceiling_1000']['votes_per_s']:>16,.0f}   "
        f"{res['ceiling_1000']['votes_per_s'] / c['votes_per_s']:.2f} x ceiling, one connection",
        f"{'seed design (BRPOP + INSERT), votes/s':<44}{s['votes_per_s']:>16,.0f}",
        f"{'drain, default settings, votes/s':<44}{d['votes_per_s']:>16,.0f}",
        f"{'  CPU per vote, us: worker, MariaDB':<44}"
        f"{d['worker_cpu_us_per_vote']:>8.2f}{d['mariadb_cpu_us_per_vote']:>8.2f}   "
        f"MariaDB in the ceiling: {c['before_drain']['mariadb_cpu_us_per_vote']:.2f}",
        f"{'  CPU cores busy while draining':<44}"
        f"{' '.join(f'{k} {v}' for k, v in d['cpu_cores_busy'].items()):>16}",
        f"{'  drain / ceiling':<44}{d['votes_per_s'] / c['votes_per_s']:>16.2f}   "
        f">= 0.90  {t['drain_vs_ceiling']}",
        f"{'  drain / MariaDB alone at 1,000 rows':<44}"
        f"{d['votes_per_s'] / res['ceiling_1000']['votes_per_s']:>16.2f}",
        f"{'  drain / seed design':<44}{d['votes_per_s'] / s['votes_per_s']:>16.0f}   "
        f">= 60    {t['drain_vs_seed']}",
        f"{'peak RSS draining ' + format(d['votes'], ',') + ' votes, MB':<44}"
        f"{d['peak_rss_mb']:>16.0f}   <= 150   {t['peak_rss']}",
        f"{'  RSS by progress, MB':<44}"
        f"{' '.join(str(v) for v in d['rss_mb_by_progress'].values()):>16}",
        "",
        f"{'offered/s':>10}{'achieved/s':>12}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'max ms':>9}",
    ]
    for lat in res["latency"]:
        lines.append(
            f"{lat['offered_per_s']:>10,.0f}{lat['achieved_per_s']:>12,.0f}{lat['p50_ms']:>9.1f}"
            f"{lat['p90_ms']:>9.1f}{lat['p99_ms']:>9.1f}{lat['max_ms']:>9.1f}"
        )
    lines.append(
        f"  p99 <= 5 ms at 2,000/s: {t['p99_2k']};  p99 <= 10 ms at 20,000/s: {t['p99_20k']}"
    )
    if res["sweep"]:
        rate = res["sweep"][0]["latency"]["offered_per_s"]
        lines += ["", f"{'BATCH_SIZE':>10}{'drain votes/s':>15}{'x ceiling':>11}"
                  f"{f'p99 ms @ {rate:,.0f}/s':>20}"]  # fmt: skip
        for row in res["sweep"]:
            lines.append(
                f"{row['batch_size']:>10,}{row['drain']['votes_per_s']:>15,.0f}"
                f"{row['drain']['votes_per_s'] / c['votes_per_s']:>11.2f}"
                f"{row['latency']['p99_ms']:>20.1f}"
            )
    return "\n".join(lines)


def verdicts(res: dict[str, Any]) -> dict[str, str]:
    d = res["drain"]

    def ok(flag: bool) -> str:
        return "met" if flag else "NOT MET"

    by_rate = {lat["offered_per_s"]: lat for lat in res["latency"]}
    out = {
        "drain_vs_ceiling": ok(d["votes_per_s"] >= 0.90 * res["ceiling"]["votes_per_s"]),
        "drain_vs_seed": ok(d["votes_per_s"] >= 60 * res["seed_design"]["votes_per_s"]),
        "peak_rss": ok(d["peak_rss_mb"] <= 150),
        "p99_2k": ok(by_rate[2000]["p99_ms"] <= 5) if 2000 in by_rate else "not measured",
        "p99_20k": ok(by_rate[20000]["p99_ms"] <= 10) if 20000 in by_rate else "not measured",
    }
    return out


def plot(res: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    sweep = res["sweep"]
    if sweep:
        sizes = [row["batch_size"] for row in sweep]
        left.plot(sizes, [row["drain"]["votes_per_s"] for row in sweep], "o-", label="drain")
        left.axhline(res["ceiling"]["votes_per_s"], color="grey", ls="--", label="ceiling")
        left.axhline(
            0.9 * res["ceiling"]["votes_per_s"], color="grey", ls=":", label="0.9 x ceiling"
        )
        left.set_xscale("log")
        left.set_xlabel("BATCH_SIZE")
        left.set_ylabel("votes/s (drain)")
        twin = left.twinx()
        twin.plot(sizes, [row["latency"]["p99_ms"] for row in sweep], "s--", color="tab:red",
                  label="p99 push→commit")  # fmt: skip
        twin.set_ylabel(
            f"p99 ms at {sweep[0]['latency']['offered_per_s']:,.0f} votes/s", color="tab:red"
        )
        left.legend(loc="lower right")
        left.set_title("Throughput vs batch size")
    rates = [lat["offered_per_s"] for lat in res["latency"]]
    for key in ("p50_ms", "p90_ms", "p99_ms", "max_ms"):
        right.plot(rates, [lat[key] for lat in res["latency"]], "o-", label=key.removesuffix("_ms"))
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xlabel("offered votes/s")
    right.set_ylabel("push→commit ms")
    right.legend()
    right.set_title("Latency vs offered rate (default settings)")
    m = res["machine"]
    fig.suptitle(
        f"trio-worker bench {res['started_at'][:16]}Z · {m['cpu']} · {m['cores']} cores · "
        f"load {m['load_avg_before'][0]:.2f}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def profile_summary(path: Path, top: int = 15) -> list[tuple[str, float]]:
    """Self time per function from py-spy's collapsed stacks: where the worker spends its CPU."""
    own: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        leaf = stack.split(";")[-1]
        own[leaf] = own.get(leaf, 0) + n
    ranked = sorted(own.items(), key=lambda kv: -kv[1])[:top]
    return [(name, n / total) for name, n in ranked]


# ----------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--count", type=int, default=1_000_000, help="backlog drained (default 1M)")
    p.add_argument("--seed-count", type=int, default=20_000, help="votes for the seed design")
    p.add_argument("--rates", default="1000,2000,5000,20000", help="offered votes/s")
    p.add_argument("--rate-seconds", type=float, default=10, help="seconds per offered rate")
    p.add_argument("--sweep", default="100,250,500,1000,2000,5000", help="BATCH_SIZE values")
    p.add_argument("--sweep-count", type=int, default=200_000, help="backlog per sweep point")
    p.add_argument("--sweep-rate", type=float, default=20_000, help="offered rate for sweep p99")
    p.add_argument("--sweep-seconds", type=float, default=5)
    p.add_argument("--quick", action="store_true", help="a short run (about a minute)")
    p.add_argument("--profile", action="store_true", help="py-spy the worker during the drain")
    p.add_argument("--output", type=Path, default=RESULTS / "latest.json")
    args = p.parse_args(argv)
    if args.quick:
        args.count, args.seed_count = 100_000, 5_000
        args.rate_seconds, args.sweep_seconds = 3, 2
        args.sweep, args.sweep_count = "100,1000,5000", 50_000
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    env = os.environ
    stores = Stores(
        env.get("REDIS_HOST", "127.0.0.1"),
        int(env.get("REDIS_PORT", "6379")),
        env.get("MYSQL_HOST", "127.0.0.1"),
        int(env.get("MYSQL_PORT", "3306")),
        env.get("MYSQL_USER", "root"),
        env.get("MYSQL_PASSWORD", ""),
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    rates = [float(x) for x in args.rates.split(",") if x]
    res: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", ""),
        "machine": machine(),
        "servers": server_versions(stores),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
    }
    started = time.monotonic()
    profile_path = RESULTS / "profile-drain.tmp" if args.profile else None
    try:
        say(f"ceiling: {args.count:,} rows as {CEILING_ROWS_PER_STATEMENT:,}-row INSERTs")
        res["ceiling"] = ceiling(stores, args.count)
        say(f"  {res['ceiling']['votes_per_s']:,.0f} votes/s")
        # The same, in transactions of the worker's default size: MariaDB's own bound for it.
        say(f"MariaDB alone at the default batch: {args.count:,} rows as 1,000-row INSERTs")
        res["ceiling_1000"] = ceiling(stores, args.count, 1000)
        say(f"  {res['ceiling_1000']['votes_per_s']:,.0f} votes/s")
        say(f"seed design: {args.seed_count:,} votes, BRPOP + one INSERT each")
        res["seed_design"] = seed_design(stores, args.seed_count)
        say(f"  {res['seed_design']['votes_per_s']:,.0f} votes/s")
        say(f"worker, default settings: drain {args.count:,}, then latency at {args.rates}/s")
        main_run = Session(None, args.count, rates, args.rate_seconds, profile_path).run(stores)
        res.update(main_run)
        say(f"  drain {res['drain']['votes_per_s']:,.0f} votes/s, "
            f"peak RSS {res['drain']['peak_rss_mb']:.0f} MB")  # fmt: skip
        # The machine is shared: the ceiling is measured again right after the drain, and the
        # drain is compared with the mean of the two.
        say("ceiling again, after the drain")
        before, after = res["ceiling"], ceiling(stores, args.count)
        say(f"  {after['votes_per_s']:,.0f} votes/s")
        res["ceiling"] = {
            "votes": args.count,
            "votes_per_s": (before["votes_per_s"] + after["votes_per_s"]) / 2,
            "before_drain": before,
            "after_drain": after,
        }
        res["sweep"] = []
        for size in [int(x) for x in args.sweep.split(",") if x]:
            say(f"sweep: BATCH_SIZE={size}: drain {args.sweep_count:,}, "
                f"latency at {args.sweep_rate:,.0f}/s")  # fmt: skip
            out = Session(size, args.sweep_count, [args.sweep_rate], args.sweep_seconds).run(stores)
            res["sweep"].append(
                {"batch_size": size, "drain": out["drain"], "latency": out["latency"][0],
                 "worker_exit_status": out["worker_exit_status"]}
            )  # fmt: skip
            say(f"  {out['drain']['votes_per_s']:,.0f} votes/s, "
                f"p99 {out['latency'][0]['p99_ms']:.1f} ms")  # fmt: skip
    finally:
        cleanup(stores)
    res["machine"]["load_avg_after"] = list(os.getloadavg())
    res["wall_seconds"] = time.monotonic() - started
    res["targets"] = verdicts(res)
    if profile_path is not None and profile_path.exists():
        res["profile_self_time"] = profile_summary(profile_path)
    args.output.write_text(json.dumps(res, indent=2) + "\n")
    png = args.output.with_suffix(".png")
    plot(res, png)
    print(table(res))
    if "profile_self_time" in res:
        print("\nworker self time during the drain (py-spy):")
        for name, share in res["profile_self_time"]:
            print(f"  {share:6.1%}  {name}")
    print(f"\nwrote {args.output} and {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
