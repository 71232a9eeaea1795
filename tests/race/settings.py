"""The race's fixed settings: how its workers and stores are configured, how worker processes
are started, and the request patterns the proxies match to time a fault.

The patterns come from the package's public scripts (``Script.sha``), so they follow the worker's
code; a pattern that stops matching shows as a fault kind that never fires, which the coverage
check (``kinds``) fails on.
"""

from __future__ import annotations

import glob
import sys
from dataclasses import dataclass

from tests.support.servers import OwnStores
from trio_worker.config import Config, from_env
from trio_worker.queue import scripts

HEARTBEAT_TTL_S = 2.0
SHUTDOWN_TIMEOUT_S = 20.0
# The least accepted: a worker paused for longer (pause_beyond_retention) wakes up holding
# batches the ledger may no longer vouch for.
LEDGER_RETENTION_S = 30
# frozen_mysql freezes a connection for longer than this: the worker must give up on it.
MYSQL_READ_TIMEOUT_S = 3.0
# Producers push messages over this (oversized_message).
MAX_MESSAGE_BYTES = 4096
# The race's own mariadbd refuses packets over this; producers push bursts of votes whose
# voter ids make one batch's INSERT larger (oversized_packet). A batch of 1000 ordinary votes
# is about 51 KB of INSERT text, under it.
MAX_ALLOWED_PACKET = 64 * 1024
# mixed_retention restarts a worker process with one of these (a rolling change from a longer
# setting): the others' pruners, at LEDGER_RETENTION_S, delete rows older than 30 s every 3 s.
LONG_RETENTIONS_S = (300, 7 * 24 * 3600)
# clock_step moves a worker process's wall clock by this much (either way), past the ledger's skew
# allowance at any retention (at most 300 s).
CLOCK_STEP_S = 400
# Worker processes live in a time zone that is not UTC (POSIX: "-05:45" is 5:45 east of UTC):
# stored timestamps must be UTC all the same.
WORKER_TZ = "RACE-05:45"
# -P: the package comes from the environment (or TRIO_WORKER_UNDER_TEST), not the current folder.
WORKER_CMD = [sys.executable, "-P", "-X", "dev", "-W", "error", "-m", "trio_worker", "run"]
# Lines a worker must never print: Trio/asyncio hygiene and crashes; and EINVAL, which is what
# time.sleep raises under libfaketime with the monotonic clock unfaked (the worker must never
# call it: a blocking sleep would stall its event loop anyway).
BAD_LOG_LINES = (
    "was never awaited",
    "ResourceWarning",
    "unclosed",
    "Traceback",
    "Task was destroyed",
    "[Errno 22]",
)


def libfaketime() -> str | None:
    """Debian's libfaketime (package ``faketime``; ``.ci/run`` installs it), if installed: every
    worker process runs under it, so that clock_step can move its wall clock at any moment."""
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
    found += sorted(glob.glob("/usr/lib/faketime/libfaketime.so.1"))
    return found[0] if found else None


@dataclass(frozen=True)
class Pattern:
    """A request a proxy can recognise, by a name for the report."""

    name: str
    data: bytes


TAKE = Pattern("take script", scripts.TAKE.sha.encode())
FINISH = Pattern("finish script", scripts.FINISH.sha.encode())
CLAIM = Pattern("claim script", scripts.CLAIM.sha.encode())
BLMOVE = Pattern("BLMOVE", b"BLMOVE")
SADD = Pattern("SADD", b"SADD")
COMMIT = Pattern("COMMIT", b"COMMIT")
INSERT_VOTES = Pattern("INSERT INTO votes", b"INSERT INTO votes")
INSERT_LEDGER = Pattern("INSERT INTO vote_batches", b"INSERT INTO vote_batches")
REDIS_PATTERNS = (TAKE, FINISH, CLAIM, BLMOVE, SADD)
MYSQL_PATTERNS = (COMMIT, INSERT_VOTES, INSERT_LEDGER)
# Sent with every batch, so a busy worker sends them within a second; the others only at
# moments of their own (a claim, an empty queue, a new in-flight list).
EVERY_BATCH = (TAKE, FINISH, *MYSQL_PATTERNS)
# What a worker sends when it takes votes or someone else's batch: the take script (its sha,
# and the pop it is given), BLMOVE, reading an in-flight list, the claim script.
TAKING = (TAKE.data, b"RPOP", b"LPOP", BLMOVE.data, b"LRANGE", CLAIM.data)


def base_config(stores: OwnStores) -> Config:
    """The configuration every race worker shares, read the way the worker reads it."""
    return from_env(
        {
            "REDIS_HOST": "127.0.0.1",
            "REDIS_PORT": str(stores.redis.port),
            "MYSQL_HOST": "127.0.0.1",
            "MYSQL_PORT": str(stores.mysql.port),
            "MYSQL_USER": "root",
            "MYSQL_PASSWORD": "",
            "LOG_FORMAT": "text",
            "LOG_LEVEL": "warning",
            "HEARTBEAT_TTL_S": str(HEARTBEAT_TTL_S),
            "SHUTDOWN_TIMEOUT_S": str(SHUTDOWN_TIMEOUT_S),
            "LEDGER_RETENTION_S": str(LEDGER_RETENTION_S),
            "MYSQL_READ_TIMEOUT_S": str(MYSQL_READ_TIMEOUT_S),
            "MAX_MESSAGE_BYTES": str(MAX_MESSAGE_BYTES),
            "HOST": "127.0.0.1",
            "PORT": "0",
        }
    )
