"""The real worker as a subprocess: ``python -m trio_worker run``, configured for the bench."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import NamedTuple

import psutil

from bench.common import DB, QUEUE, ROOT, free_port
from bench.stores import Stores, servers

WORKER_ARGV = ["-m", "trio_worker", "run"]
SEVERE = ("warning", "error", "critical")


class Cpu(NamedTuple):
    """A reading of a process's CPU seconds, and of the time its threads waited for a core."""

    user: float
    system: float
    run_queue_wait: float  # runnable but not running (schedstat): what py-spy counts as busy

    def __sub__(self, other: tuple[float, ...]) -> Cpu:
        return Cpu(*(a - b for a, b in zip(self, other, strict=True)))

    @property
    def total(self) -> float:
        return self.user + self.system


def cpu(process: psutil.Process) -> Cpu:
    times = process.cpu_times()
    wait = 0
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{process.pid}/task").iterdir():
            with contextlib.suppress(OSError, IndexError, ValueError):
                wait += int((task / "schedstat").read_text().split()[1])
    return Cpu(times.user, times.system, wait / 1e9)


class Worker:
    """``python -m trio_worker run`` (or ``argv``) against the bench's database and queue."""

    def __init__(
        self,
        stores: Stores,
        log_path: Path,
        *,
        batch_size: int | None = None,
        argv: list[str] | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
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
        env.update(extra_env or {})
        # This worker's lines only: the log file is shared by the run's workers, one after another.
        self.log_start = log_path.stat().st_size if log_path.exists() else 0
        self.log = log_path.open("ab")
        self.started_ns = time.monotonic_ns()
        self.proc = subprocess.Popen(
            [sys.executable, *(argv or WORKER_ARGV)],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.ps = psutil.Process(self.proc.pid)
        self.servers = servers(stores)

    def wait_ready(self, timeout_s: float = 60, poll_s: float = 0.05) -> int:
        """Wait for ``/ready`` to say 200; return when it first did (CLOCK_MONOTONIC ns)."""
        deadline = time.monotonic() + timeout_s
        url = f"http://127.0.0.1:{self.port}/ready"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"worker exited with {self.proc.returncode}; see {self.log.name}")
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return time.monotonic_ns()
            time.sleep(poll_s)
        raise SystemExit("worker not ready in time")

    def cpu(self) -> Cpu:
        return cpu(self.ps)

    def rss_mb(self) -> float:
        return float(self.ps.memory_info().rss) / 2**20

    def peak_rss_mb(self) -> float:
        """VmHWM: the kernel's own high-water mark of the process's resident memory."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def warnings(self, limit: int = 20) -> list[str]:
        """The messages this worker logged at warning level or above (its first ``limit``)."""
        found = []
        with open(self.log.name, "rb") as f:
            f.seek(self.log_start)
            for line in f:
                with contextlib.suppress(ValueError):
                    record = json.loads(line)
                    if isinstance(record, dict) and record.get("level") in SEVERE:
                        found.append(str(record.get("message")))
                if len(found) >= limit:
                    break
        return found

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
