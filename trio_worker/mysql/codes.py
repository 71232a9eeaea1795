"""The MySQL error boundary: the server's error codes by name, and what each means to us.

Every call into asyncmy runs inside ``mysql_errors`` (``Connection.run``), which maps:

- the connection failing (socket errors, the server going away, a client-side protocol error,
  the server's own connection codes) and the server refusing for reasons of the schema or the
  account (a dropped table, a revoked right, a read-only server, a lock wait or deadlock, any
  code not listed below) → ``MySQLUnavailable``: retried with backoff on a new connection, whose
  set-up recreates what is missing; ``/ready`` says 503 meanwhile;
- a row's values refused (too long, a character the column's charset lacks, a failed CHECK
  constraint) → ``RowRefused``: that row can't be stored, the batch's other rows can;
- a duplicate key → ``DuplicateEntry`` (a ``RowRefused``): on the ledger it means "this batch
  is committed already";
- an SQL syntax error → propagates as itself: that is a bug in the text we built.

Any exception that is not a driver error (``TypeError``, ``AttributeError``, ...) is a bug and is
never mistaken for a lost connection.

MariaDB Galera Cluster adds no error of its own kind: each of its refusals (1047 a node not
ready, 1180 a COMMIT without the Primary Component, 1213 a certification conflict, 2013 a
connection lost in a view change) is a store failure, retried on a new connection (which a load
balancer sends to a node that serves). Why a retry is safe even when the COMMIT was acknowledged:
Galera acknowledges a COMMIT only once the transaction's write-set has been replicated, in one
total order, to every node of the Primary Component, and certified; each of them certifies it the
same way and commits it, so the node's death after the acknowledgement loses nothing. The retry
of the batch, on another node, then hits the ledger's duplicate key: at once if that node has
applied the write-set, or after a certification conflict (1213, retried again) if it had only
received it. A COMMIT whose reply was lost either was certified (the same) or never left the
node (the retry stores the batch). See docs/operations.md, "Running on MariaDB Galera Cluster".
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from enum import IntEnum

import asyncmy.errors

from trio_worker.errors import MySQLUnavailable
from trio_worker.failures import describe


class Code(IntEnum):
    """The server and client error codes the worker tells apart."""

    DUPLICATE_ENTRY = 1062
    TABLE_ACCESS_DENIED = 1142  # a right the account lacks (CREATE, ALTER, INSERT, ...)
    PARSE_ERROR = 1064
    NO_SUCH_THREAD = 1094  # KILL of a session that is gone
    # A row's values.
    BAD_NULL = 1048
    WARN_DATA_OUT_OF_RANGE = 1264
    WARN_DATA_TRUNCATED = 1265
    TRUNCATED_WRONG_VALUE = 1292
    INVALID_CHARACTER_STRING = 1300
    NO_DEFAULT_FOR_FIELD = 1364
    TRUNCATED_WRONG_VALUE_FOR_FIELD = 1366
    ILLEGAL_VALUE_FOR_TYPE = 1367
    DATA_TOO_LONG = 1406
    CHECK_CONSTRAINT_VIOLATED = 3819  # MySQL 8
    CONSTRAINT_FAILED = 4025  # MariaDB
    # Transient conflicts: retried.
    LOCK_WAIT_TIMEOUT = 1205
    # Also Galera's certification conflict: another node committed a write-set touching the
    # same key first (for the ledger: the same batch, committed there). Retried on a new
    # connection; the retry finds the ledger row and stores nothing.
    LOCK_DEADLOCK = 1213
    # Galera: "Error while appending streaming replication fragment (provider status: Not
    # connected to Primary Component)" or "Got error 6 during COMMIT": the node left the Primary
    # Component while the transaction replicated; not committed anywhere. A store failure,
    # retried.
    ERROR_DURING_COMMIT = 1180
    # The connection or the server, not the statement.
    CON_COUNT_ERROR = 1040
    HANDSHAKE_ERROR = 1043
    # Galera: "WSREP has not yet prepared node for application use", a node outside the
    # Primary Component (no quorum) or not yet synced refuses every statement. Retried on a
    # new connection until a node serves.
    UNKNOWN_COM_ERROR = 1047
    SERVER_SHUTDOWN = 1053
    NORMAL_SHUTDOWN = 1077
    ABORTING_CONNECTION = 1152
    NET_PACKET_TOO_LARGE = 1153
    NET_READ_ERROR = 1158
    NET_READ_INTERRUPTED = 1159
    NET_ERROR_ON_WRITE = 1160
    NET_WRITE_INTERRUPTED = 1161
    CONNECTION_KILLED = 1927  # MariaDB
    CLIENT_INTERACTION_TIMEOUT = 4031  # MySQL 8
    # Client-side (the driver): 2000-2999, e.g. 2003 can't connect, 2013 lost connection (also
    # a Galera node that died, or a load balancer that cut its sessions in a view change).
    CLIENT_FIRST = 2000
    CLIENT_LAST = 2999


ROW_CODES = frozenset(
    {
        Code.BAD_NULL,
        Code.WARN_DATA_OUT_OF_RANGE,
        Code.WARN_DATA_TRUNCATED,
        Code.TRUNCATED_WRONG_VALUE,
        Code.INVALID_CHARACTER_STRING,
        Code.NO_DEFAULT_FOR_FIELD,
        Code.TRUNCATED_WRONG_VALUE_FOR_FIELD,
        Code.ILLEGAL_VALUE_FOR_TYPE,
        Code.DATA_TOO_LONG,
        Code.CHECK_CONSTRAINT_VIOLATED,
        Code.CONSTRAINT_FAILED,
    }
)

CONNECTION_CODES = frozenset(
    {
        0,  # the driver's "not connected"
        Code.CON_COUNT_ERROR,
        Code.HANDSHAKE_ERROR,
        Code.UNKNOWN_COM_ERROR,
        Code.SERVER_SHUTDOWN,
        Code.NORMAL_SHUTDOWN,
        Code.ABORTING_CONNECTION,
        Code.NET_PACKET_TOO_LARGE,
        Code.NET_READ_ERROR,
        Code.NET_READ_INTERRUPTED,
        Code.NET_ERROR_ON_WRITE,
        Code.NET_WRITE_INTERRUPTED,
        Code.CONNECTION_KILLED,
        Code.CLIENT_INTERACTION_TIMEOUT,
    }
)


class RowRefused(Exception):
    """The server refused a row's values; the connection and the transaction are still usable
    (only the failed statement was rolled back)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class DuplicateEntry(RowRefused):
    """A duplicate key: on the ledger, the batch is committed already."""


def code_of(exc: BaseException) -> int | None:
    return exc.args[0] if exc.args and isinstance(exc.args[0], int) else None


@contextmanager
def mysql_errors(address: str) -> Iterator[None]:
    """Map asyncmy's and the socket's errors to the domain's (see the module docstring)."""
    try:
        yield
    except asyncmy.errors.MySQLError as exc:
        code = code_of(exc)
        if code == Code.PARSE_ERROR:
            raise
        if code == Code.DUPLICATE_ENTRY:
            raise DuplicateEntry(code, describe(exc)) from exc
        if code in ROW_CODES:
            raise RowRefused(code, describe(exc)) from exc
        if (
            code is None
            or code in CONNECTION_CODES
            or Code.CLIENT_FIRST <= code <= Code.CLIENT_LAST
        ):
            raise MySQLUnavailable(address, describe(exc), kind="connection") from exc
        # The server refused: its code tells the operator what (e.g. 1142, a revoked right).
        raise MySQLUnavailable(
            address, f"{describe(exc)} (error {code})", kind=f"error {code}"
        ) from exc
    except (OSError, EOFError) as exc:
        raise MySQLUnavailable(address, describe(exc), kind="connection") from exc
