"""The MySQL error boundary on the errors a MariaDB Galera Cluster adds.

Each is a store failure (``MySQLUnavailable``: retried with backoff on a new connection, which
the load balancer sends to a node that serves), never a refused row or a crash. The errors are
raised by the driver's own code from the server's error packet, as they arrive.
"""

from __future__ import annotations

import struct

import asyncmy.errors
import pytest

from trio_worker.errors import MySQLUnavailable
from trio_worker.mysql.codes import Code, mysql_errors

GALERA_REFUSALS = [
    # A node outside the Primary Component (no quorum), or not synced yet.
    (Code.UNKNOWN_COM_ERROR, "WSREP has not yet prepared node for application use"),
    # The node left the Primary Component while the transaction replicated.
    (Code.ERROR_DURING_COMMIT, 'Got error 6 "No such device or address" during COMMIT'),
    (
        Code.ERROR_DURING_COMMIT,
        "Error while appending streaming replication fragment(provider status: Not connected"
        " to Primary Component)",
    ),
    # A certification conflict: another node committed a write-set on the same key first.
    (Code.LOCK_DEADLOCK, "Deadlock found when trying to get lock; try restarting transaction"),
]


def server_error(code: int, message: str) -> None:
    """Raise what asyncmy raises for this error packet from the server."""
    asyncmy.errors.raise_mysql_exception(
        b"\xff" + struct.pack("<H", code) + b"#HY000" + message.encode()
    )


@pytest.mark.parametrize(("code", "message"), GALERA_REFUSALS)
def test_a_galera_refusal_is_a_store_failure(code: int, message: str) -> None:
    with pytest.raises(MySQLUnavailable) as caught, mysql_errors("haproxy:3306"):
        server_error(code, message)
    assert message in str(caught.value)


def test_a_connection_lost_in_a_view_change_is_a_store_failure() -> None:
    with pytest.raises(MySQLUnavailable, match="Lost connection"), mysql_errors("haproxy:3306"):
        raise asyncmy.errors.OperationalError(2013, "Lost connection to MySQL server during query")
