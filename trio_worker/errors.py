"""The domain's errors: what the pipeline, the HTTP probes and the operator commands act on.

Each store's driver errors are mapped to these at one boundary per store (``queue.boundary`` for
Redis, ``mysql.codes`` for MySQL), httpcore-style. A driver error that is not mapped there is a
bug and propagates as itself, with its traceback.
"""

from __future__ import annotations


class StoreUnavailable(Exception):
    """A store can't do our work now: unreachable, timed out, or refusing (e.g. a read-only
    replica, a dropped table, a revoked right). Retried with backoff; ``/ready`` says 503."""

    store = "store"

    def __init__(
        self, address: str, reason: str, *, kind: str = "unavailable", writes_refused: bool = False
    ) -> None:
        super().__init__(f"{self.store} at {address}: {reason}")
        self.address = address
        self.reason = reason
        # What kind of failure (the store's boundary names them): an outage is logged when it
        # begins and when its kind changes, not when its text does.
        self.kind = kind
        # The store answers, reads included, but refuses writes (out of memory, too few
        # replicas, a read-only replica): it is down until a write succeeds again.
        self.writes_refused = writes_refused


class RedisUnavailable(StoreUnavailable):
    store = "Redis"


class MySQLUnavailable(StoreUnavailable):
    store = "MySQL"
