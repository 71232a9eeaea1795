"""SQL text the worker builds: session settings, quoting, the batch's statements.

Values go into SQL as literals, not as driver parameters: a batch's INSERT is built in one pass,
and quoting is the one thing to get right. Under ``NO_BACKSLASH_ESCAPES``, which every worker
session sets (``SESSION``), a single quote is the only character with a meaning inside a
literal, and doubling it is the whole escape: no value can end its literal early.
"""

from __future__ import annotations

from collections.abc import Sequence

from trio_worker.messages import Row

# wait_timeout: if a worker dies where the server can't see it (a network partition), its open
# transaction, and the ledger row lock that makes another worker wait for the same batch, go
# after this long rather than the server's default of 8 hours. Idle connections are replaced
# before that (``Connection.IDLE_RECONNECT_S``) so it never cuts a healthy worker.
WAIT_TIMEOUT_S = 600
SESSION = (
    "SET SESSION sql_mode='STRICT_ALL_TABLES,NO_BACKSLASH_ESCAPES,NO_ENGINE_SUBSTITUTION',"
    f" time_zone='+00:00', innodb_lock_wait_timeout=10, wait_timeout={WAIT_TIMEOUT_S}"
)


def quote(text: str) -> str:
    """``text`` as a string literal (valid under NO_BACKSLASH_ESCAPES only)."""
    if "'" in text:
        text = text.replace("'", "''")
    return f"'{text}'"


def insert_votes(rows: Sequence[Row]) -> str:
    """``INSERT`` text for rows whose values are already validated strings."""
    return "INSERT INTO votes (voter_id, vote, timestamp) VALUES " + ",".join(
        [f"({quote(v)},{quote(c)},'{t}')" for v, c, t in rows]
    )


def insert_ledger(batch_id: str, count: int) -> str:
    return f"INSERT INTO vote_batches (batch_id, votes) VALUES ({quote(batch_id)}, {count})"


def prune_ledger(older_than_s: int, limit: int) -> str:
    return (
        "DELETE FROM vote_batches WHERE committed_at < "
        f"NOW() - INTERVAL {int(older_than_s)} SECOND LIMIT {int(limit)}"
    )
