"""SQL text the worker builds: session settings, quoting, the batch's statements.

Values go into SQL as literals, not as driver parameters: a batch's INSERT is built in one pass,
and quoting is the one thing to get right. Under ``NO_BACKSLASH_ESCAPES``, which every worker
session sets (``SESSION``), a single quote is the only character with a meaning inside a
literal, and doubling it is the whole escape: no value can end its literal early.
"""

from __future__ import annotations

from collections.abc import Sequence

from trio_worker.messages import Row
from trio_worker.mysql.clock import Bounds

# wait_timeout: if a worker dies where the server can't see it (a network partition), its open
# transaction, and the ledger row lock that makes another worker wait for the same batch, go
# after this long rather than the server's default of 8 hours. Idle connections are replaced
# before that (``Connection.IDLE_RECONNECT_S``) so it never cuts a healthy worker.
# lock_wait_timeout: a metadata lock (the schema's ALTER on an upgrade, waiting behind another
# session's transaction, blocks every insert queued after it) is given up after 10 s, not a year.
WAIT_TIMEOUT_S = 600
SESSION = (
    "SET SESSION sql_mode='STRICT_ALL_TABLES,NO_BACKSLASH_ESCAPES,NO_ENGINE_SUBSTITUTION',"
    " time_zone='+00:00', innodb_lock_wait_timeout=10, lock_wait_timeout=10,"
    f" wait_timeout={WAIT_TIMEOUT_S}"
)


_Q, _QQ = "'", "''"


def quote(text: str) -> str:
    """``text`` as a string literal (valid under NO_BACKSLASH_ESCAPES only)."""
    if "'" in text:
        text = text.replace("'", "''")
    return f"'{text}'"


VOTES_INSERT = "INSERT INTO votes (voter_id, vote, timestamp) VALUES "


def values(rows: Sequence[Row]) -> list[str]:
    """Each row's ``(...)`` for ``VOTES_INSERT``; the rows' values are validated strings.

    ``quote`` written out inline: this runs for every vote, and a call per value cost as much
    as the rest of the text.
    """
    return [
        f"('{v if _Q not in v else v.replace(_Q, _QQ)}',"
        f"'{c if _Q not in c else c.replace(_Q, _QQ)}','{t}')"
        for v, c, t in rows
    ]


def values_text(rows: Sequence[Row]) -> str:
    """``values(rows)`` joined by commas, built by ``str.join`` alone when no value holds a
    quote, which is almost always: each row then adds exactly six quotes to the text, and a
    value's own quote would add more, so counting them tells."""
    text = "('" + "'),('".join(map("','".join, rows)) + "')"
    if rows and text.count(_Q) == 6 * len(rows):
        return text
    return ",".join(values(rows))


def insert_votes(rows: Sequence[Row]) -> str:
    return VOTES_INSERT + values_text(rows)


# The session settings the batch's SQL relies on: quotes are the only escape, and the batch is
# one transaction. A proxy or pooler that resets session state between uses breaks both.
SESSION_INTACT = "FIND_IN_SET('NO_BACKSLASH_ESCAPES', @@sql_mode) AND @@autocommit = 0"


def insert_ledger(
    batch_id: str, count: int, fresh: Bounds | None = None, *, horizon: bool = True
) -> str:
    """The batch's ledger row, which guards what follows it in the packet.

    The row is inserted only if the session still has its settings (else its batch_id is
    NULL) and, with ``fresh``, only while the server's clock is within its bounds and the batch
    started after the ledger's horizon (else its vote count is NULL: the batch is older than
    the ledger can vouch for). A NULL in a NOT NULL column is error 1048 whatever the sql_mode,
    and the server parses and runs nothing after a failed statement of a multi-statement packet.
    """
    votes = str(count)
    if fresh is not None:
        # Past the horizon: rows of batches started before it may be pruned, by any worker.
        past_horizon = f" AND {fresh.floor:.3f} > {HORIZON_S}" if horizon else ""
        votes = (
            f"IF(UNIX_TIMESTAMP(NOW(3)) BETWEEN {fresh.earliest:.3f} AND {fresh.latest:.3f}"
            f"{past_horizon}, {count}, NULL)"
        )
    guarded_id = f"IF({SESSION_INTACT}, {quote(batch_id)}, NULL)"
    return f"INSERT INTO vote_batches (batch_id, votes) VALUES ({guarded_id}, {votes})"


# The ledger's horizon, in seconds of the server's clock (0 before the first prune): every row of
# a batch committed before it may have been pruned, by a worker of any LEDGER_RETENTION_S.
HORIZON_S = "IFNULL((SELECT UNIX_TIMESTAMP(horizon) FROM vote_ledger_horizon WHERE id = 1), 0)"


def set_refused(batch_id: str, positions: Sequence[int]) -> str:
    """Record which of the batch's rows MySQL refused (so a retry dead-letters exactly those)."""
    text = ",".join(str(p) for p in positions)
    return f"UPDATE vote_batches SET refused = {quote(text)} WHERE batch_id = {quote(batch_id)}"


def ledger_entry(batch_id: str) -> str:
    return f"SELECT refused FROM vote_batches WHERE batch_id = {quote(batch_id)}"


def prune_ledger(
    older_than_s: int, limit: int, keep: Sequence[str] = (), *, horizon: bool = True
) -> str:
    """Forget rows older than ``older_than_s`` and than the horizon published before (by any
    worker's pass: see ``ledger.prune``), but never those of the batches ``keep``."""
    spared = f" AND batch_id NOT IN ({','.join(quote(k) for k in keep)})" if keep else ""
    before = " AND committed_at < (SELECT horizon FROM vote_ledger_horizon WHERE id = 1)"
    return (
        f"DELETE FROM vote_batches WHERE committed_at < NOW() - INTERVAL {int(older_than_s)} SECOND"
        f"{before if horizon else ''}{spared} LIMIT {int(limit)}"
    )


def raise_horizon(older_than_s: int) -> str:
    """Move the ledger's horizon up to ``older_than_s`` ago (never back): the next passes may
    prune the rows committed before it."""
    return (
        "INSERT INTO vote_ledger_horizon (id, horizon)"
        f" VALUES (1, NOW(3) - INTERVAL {int(older_than_s)} SECOND)"
        " ON DUPLICATE KEY UPDATE horizon = GREATEST(horizon, VALUES(horizon))"
    )
