"""The Redis error boundary: what Redis or the connection says, mapped to the domain once.

Every call into redis-py runs inside ``redis_errors`` (as every MySQL call runs inside
``mysql.codes.mysql_errors``; httpcore's ``map_exceptions`` is the model). A failure that means
"Redis can't do our work now" becomes ``RedisUnavailable`` with a named ``Kind``: retried with
backoff, ``/ready`` 503 meanwhile, logged when the kind changes. Any other error is a bug (ours
or a script's) and propagates as itself, with its traceback.

Redis before 7.0 wraps an error raised inside a script ("Error running script (call to f_...):
@user_script:1: @user_script: 1: -OOM command not allowed ..."); Redis 7 appends where it came
from ("... script: <sha>, on @user_script:1."). Both are unwrapped here, so a refused write is
the same kind whether a script or a plain command met it.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum

import redis.exceptions as rex
from redis.asyncio.sentinel import MasterNotFoundError

from trio_worker.errors import RedisUnavailable
from trio_worker.failures import REDIS_TLS, chain, no_primary, store_failure


class Kind(StrEnum):
    """Why Redis can't do our work now. The worker does the same for each (retry with backoff);
    the kind says what to look at, and a change of kind is logged."""

    UNREACHABLE = "unreachable"  # refused, reset, closed, unresolvable, or no reply in time
    TLS = "tls"  # a handshake that failed: the message names the certificate problem
    LOGIN = "login"  # a wrong user or password
    NO_PERMISSION = "no_permission"  # the ACL user lacks a command or a key
    LOADING = "loading"  # the server is loading its data set
    BUSY = "busy"  # another script runs too long
    READ_ONLY = "read_only"  # a replica: a failover happened, or a wrong address
    OUT_OF_MEMORY = "out_of_memory"  # maxmemory reached with a policy that evicts nothing
    NO_REPLICAS = "no_replicas"  # min-replicas-to-write not met
    DISK_ERROR = "disk_error"  # MISCONF: the server can't persist, and refuses writes
    PRIMARY_CHANGED = "primary_changed"  # a role change under a blocked command (failover)
    NO_PRIMARY = "no_primary"  # the Sentinels name none
    CLUSTER = "cluster"  # a cluster that is down, moving slots, or unreachable
    NOT_CONFIGURED_FOR_CLUSTER = "not_configured_for_cluster"  # a node, REDIS_CLUSTER unset
    WRONG_TYPE = "wrong_type"  # a key of ours holds another type (made by someone else)
    TOO_OLD = "too_old"  # a command this server lacks (a Redis older than 6.2)
    REPLICAS_BEHIND = "replicas_behind"  # REDIS_WAIT_REPLICAS not reached


# The server answers, reads included, but refuses every write: the store stays down for the
# pipeline until a write succeeds (a read that succeeds must not make it look healthy).
WRITES_REFUSED = frozenset({Kind.READ_ONLY, Kind.OUT_OF_MEMORY, Kind.NO_REPLICAS, Kind.DISK_ERROR})
# The connection reached a replica, not the primary: find the primary again.
REPLICA_KINDS = frozenset({Kind.READ_ONLY, Kind.PRIMARY_CHANGED})

# The first word of an error reply, and what it means. Replies not listed are bugs, but for the
# texts of a command the server lacks (``_TOO_OLD``).
_REPLY_KINDS = {
    "OOM": Kind.OUT_OF_MEMORY,
    "NOREPLICAS": Kind.NO_REPLICAS,
    "MISCONF": Kind.DISK_ERROR,
    "READONLY": Kind.READ_ONLY,
    "BUSY": Kind.BUSY,
    "LOADING": Kind.LOADING,
    "NOPERM": Kind.NO_PERMISSION,
    "WRONGPASS": Kind.LOGIN,
    "NOAUTH": Kind.LOGIN,
    "WRONGTYPE": Kind.WRONG_TYPE,
    "UNBLOCKED": Kind.PRIMARY_CHANGED,
    "MASTERDOWN": Kind.PRIMARY_CHANGED,
    "CLUSTERDOWN": Kind.CLUSTER,
    "TRYAGAIN": Kind.CLUSTER,
}
# A cluster's replies to a client that does not know it talks to a cluster (REDIS_CLUSTER unset).
_CLUSTER_REPLIES = ("MOVED", "ASK", "CLUSTERDOWN", "CROSSSLOT")
# redis-py's exception types whose reply code it strips from the text.
_TYPE_KINDS: tuple[tuple[type[BaseException], Kind], ...] = (
    (rex.AuthenticationError, Kind.LOGIN),
    (rex.BusyLoadingError, Kind.LOADING),
    (rex.ReadOnlyError, Kind.READ_ONLY),
    (rex.OutOfMemoryError, Kind.OUT_OF_MEMORY),
    (rex.NoPermissionError, Kind.NO_PERMISSION),
    (rex.MasterDownError, Kind.PRIMARY_CHANGED),
    (rex.TryAgainError, Kind.CLUSTER),
    (rex.ClusterError, Kind.CLUSTER),  # incl. CLUSTERDOWN, redirections that never settled
    (rex.SlotNotCoveredError, Kind.CLUSTER),
)
# What Redis says of a command it lacks, or of RPOP with a count before 6.2 (inside a script:
# "Wrong number of args calling Redis command From Lua script").
_TOO_OLD = re.compile(
    r"unknown command|wrong number of arguments for '(?:rpop|lpop)'|wrong number of args calling",
    re.IGNORECASE,
)
# redis-py's cluster client says "no node answered" (or "this is no cluster") with its generic
# exception, which otherwise means a programming error (a command it can't route): these only.
_CLUSTER_UNREACHABLE = (
    "Redis Cluster cannot be connected",
    "All slots are not covered",
    "Cluster mode is not enabled",
    "startup_nodes could not agree",
)
# Before 7.0: the script's error, after "Error running script (call to f_<sha>): @user_script:
# <line>: @user_script: <line>: " and, for a reply error, a "-".
_WRAPPED = re.compile(r"^(?:ERR )?Error running script \(call to [^)]*\):\s*")
_USER_SCRIPT = re.compile(r"@user_script:?\s*\d+:\s*")
# Since 7.0: " script: <sha>, on @user_script:<line>." after the error.
_SCRIPT_SUFFIX = re.compile(r"\s*script: [0-9a-f]+, on @user_script:\d+\.?\s*$")


def reply_text(exc: BaseException) -> str:
    """An error reply as the server meant it: a script's wrapping and suffix taken off, and the
    code redis-py stripped put back (``OOM command not allowed ...``)."""
    text = str(exc).strip()
    wrapped = _WRAPPED.match(text)
    if wrapped:
        text = _USER_SCRIPT.sub("", text[wrapped.end() :]).lstrip("-").strip()
    text = _SCRIPT_SUFFIX.sub("", text)
    code = getattr(exc, "status_code", None)
    if isinstance(code, str) and code and code != "ERR" and not text.startswith(code):
        text = f"{code} {text}"
    return text


def kind_of(exc: BaseException) -> Kind | None:
    """The kind of a redis-py (or socket) error, or None if it is a bug."""
    if isinstance(exc, MasterNotFoundError):
        return Kind.NO_PRIMARY
    if isinstance(exc, rex.RedisClusterException):
        if isinstance(exc, rex.SlotNotCoveredError) or str(exc).startswith(_CLUSTER_UNREACHABLE):
            return Kind.CLUSTER
        return None
    if type(exc) is rex.ResponseError and str(exc).startswith(_CLUSTER_REPLIES):
        # A plain client's parser has no cluster errors: it met a cluster node.
        return Kind.NOT_CONFIGURED_FOR_CLUSTER
    if isinstance(exc, rex.AskError):  # incl. MOVED: the round trip's, which follows none
        return Kind.CLUSTER
    if isinstance(exc, rex.ResponseError):
        found = _REPLY_KINDS.get(reply_text(exc).split(" ", 1)[0])
        if found is not None:
            return found
    for kind_type, kind in _TYPE_KINDS:
        if isinstance(exc, kind_type):
            return kind
    if isinstance(exc, rex.ResponseError):
        return Kind.TOO_OLD if _TOO_OLD.search(reply_text(exc)) else None
    if isinstance(exc, rex.ConnectionError):
        if "is now a slave" in str(exc):  # Sentinel's connection turns READONLY into this
            return Kind.PRIMARY_CHANGED
        return Kind.TLS if _tls(exc) else Kind.UNREACHABLE
    if isinstance(exc, rex.TimeoutError | rex.InvalidResponse):  # a reply cut short
        return Kind.UNREACHABLE
    if isinstance(exc, OSError):  # incl. ssl.SSLError
        return Kind.TLS if _tls(exc) else Kind.UNREACHABLE
    return None


def _tls(exc: BaseException) -> bool:
    return any(isinstance(e, ssl.SSLError) for e in chain(exc))


def unavailable(exc: BaseException, address: str) -> RedisUnavailable | None:
    """The domain error for a driver error, or None if it is a bug."""
    kind = kind_of(exc)
    if kind is None:
        return None
    return RedisUnavailable(
        address, _reason(exc, kind), kind=kind, writes_refused=kind in WRITES_REFUSED
    )


def _reason(exc: BaseException, kind: Kind) -> str:
    if kind is Kind.NO_PRIMARY:
        return no_primary(str(exc))
    if kind is Kind.NOT_CONFIGURED_FOR_CLUSTER:
        return "a Redis Cluster node: set REDIS_CLUSTER=true"
    if isinstance(exc, rex.AskError):
        redirect = "MOVED" if isinstance(exc, rex.MovedError) else "ASK"
        return f"slot {exc.slot_id} is served by {exc.host}:{exc.port} ({redirect})"
    if kind is Kind.TOO_OLD and "HELLO" in reply_text(exc):
        # redis-py speaks RESP3, which a server before 6.0 does not know.
        return (
            "the server does not know HELLO (a Redis before 6.0): the worker needs Redis 6.2"
            " or later (RPOP with a count, BLMOVE, LMOVE)"
        )
    if kind is Kind.TOO_OLD:
        return (
            f"{reply_text(exc)[:120]}: the worker needs Redis 6.2 or later (RPOP with a count,"
            " BLMOVE, LMOVE), with those commands neither renamed nor disabled"
        )
    if isinstance(exc, rex.ResponseError):
        return reply_text(exc).splitlines()[0][:200]
    return store_failure(exc, REDIS_TLS)


def replica_reached(exc: BaseException) -> bool:
    """A sign that the connection is to a replica now (a failover happened)."""
    return any(kind_of(error) in REPLICA_KINDS for error in chain(exc))


@contextmanager
def redis_errors(address: str) -> Iterator[None]:
    """Map redis-py's and the socket's errors to ``RedisUnavailable`` (see the module
    docstring); anything else propagates as itself."""
    try:
        yield
    except (rex.RedisError, rex.RedisClusterException, OSError) as exc:
        mapped = unavailable(exc, address)
        if mapped is None:
            raise
        raise mapped from exc
