"""The pure decisions, fast and without a store: how each store's errors are mapped, which
in-flight lists the pipeline stands for, and how repeated stop signals are read.

The error texts are the servers' own, recorded from Redis 5.0.6, 6.2.14 and 7.0.15 and from
MariaDB (tests/infra shows the same against the real servers).
"""

from __future__ import annotations

import signal
import ssl
from collections.abc import AsyncIterator, Sequence

import asyncmy.errors
import pytest
import redis.exceptions as rex
import trio
import trio.lowlevel
import trio.testing
from redis.asyncio.sentinel import MasterNotFoundError

from trio_worker.errors import MySQLUnavailable, RedisUnavailable
from trio_worker.mysql.clock import ServerTime
from trio_worker.mysql.codes import Code, DuplicateEntry, RowRefused, mysql_errors
from trio_worker.mysql.connection import Abandoned, Server
from trio_worker.pipeline.holdings import Holdings
from trio_worker.queue import LeaseLost, Taken
from trio_worker.queue.errors import Kind, kind_of, redis_errors, reply_text, unavailable
from trio_worker.service import REPEAT_S, watch_signals

OOM_62 = (
    "Error running script (call to f_b50c0d5b02d1ec3db49ce9f033a0b1e64c63fdfc): @user_script:1:"
    " @user_script: 1: -OOM command not allowed when used memory > 'maxmemory'."
)
NOREPLICAS_62 = (
    "Error running script (call to f_bcccc812427fd69a2863bde8f561e803b5d74d5c): @user_script:4:"
    " @user_script: 4: -NOREPLICAS Not enough good replicas to write."
)
RPOP_COUNT_50 = (
    "Error running script (call to f_b93f23eda191ca97275baa1336796e30e7871d04):"
    " @user_script:40: @user_script: 40: Wrong number of args calling Redis command From Lua"
    " script "
)
SCRIPT_70 = " script: b50c0d5b02d1ec3db49ce9f033a0b1e64c63fdfc, on @user_script:1."


@pytest.mark.parametrize(
    ("error", "kind", "refuses_writes"),
    [
        # Inside a script before Redis 7.0: wrapped.
        (rex.ResponseError(OOM_62), Kind.OUT_OF_MEMORY, True),
        (rex.ResponseError(NOREPLICAS_62), Kind.NO_REPLICAS, True),
        (rex.ResponseError(RPOP_COUNT_50), Kind.TOO_OLD, False),
        # Inside a script since 7.0: where it came from appended.
        (
            rex.OutOfMemoryError("command not allowed when used memory > 'maxmemory'." + SCRIPT_70),
            Kind.OUT_OF_MEMORY,
            True,
        ),
        (
            rex.ResponseError("NOREPLICAS Not enough good replicas to write." + SCRIPT_70),
            Kind.NO_REPLICAS,
            True,
        ),
        # Plain commands.
        (
            rex.ResponseError("NOREPLICAS Not enough good replicas to write."),
            Kind.NO_REPLICAS,
            True,
        ),
        (
            rex.ResponseError("MISCONF Redis is configured to save RDB snapshots, but ..."),
            Kind.DISK_ERROR,
            True,
        ),
        (rex.ReadOnlyError("You can't write against a read only replica."), Kind.READ_ONLY, True),
        (rex.ResponseError("BUSY Redis is busy running a script."), Kind.BUSY, False),
        (rex.ResponseError("WRONGTYPE Operation against a key ..."), Kind.WRONG_TYPE, False),
        (
            rex.ResponseError("UNBLOCKED force unblock from blocking operation"),
            Kind.PRIMARY_CHANGED,
            False,
        ),
        (rex.BusyLoadingError("Redis is loading the dataset in memory"), Kind.LOADING, False),
        (rex.AuthenticationError("invalid username-password pair"), Kind.LOGIN, False),
        (
            rex.NoPermissionError("this user has no permissions to run the 'eval' command"),
            Kind.NO_PERMISSION,
            False,
        ),
        (
            rex.ResponseError("unknown command `BLMOVE`, with args beginning with: `q`,"),
            Kind.TOO_OLD,
            False,
        ),
        (rex.ResponseError("wrong number of arguments for 'rpop' command"), Kind.TOO_OLD, False),
        (rex.ResponseError("MOVED 3999 127.0.0.1:7001"), Kind.NOT_CONFIGURED_FOR_CLUSTER, False),
        (rex.ClusterDownError("The cluster is down"), Kind.CLUSTER, False),
        (
            rex.ConnectionError("Error 111 connecting to 127.0.0.1:1. Connection refused."),
            Kind.UNREACHABLE,
            False,
        ),
        (rex.TimeoutError("Timeout reading from socket"), Kind.UNREACHABLE, False),
        (ConnectionResetError(104, "Connection reset by peer"), Kind.UNREACHABLE, False),
        (ssl.SSLCertVerificationError(1, "certificate verify failed"), Kind.TLS, False),
        (MasterNotFoundError("No master found for 'mymaster' : ..."), Kind.NO_PRIMARY, False),
        (rex.ConnectionError("The previous master is now a slave"), Kind.PRIMARY_CHANGED, False),
    ],
    ids=lambda value: value if isinstance(value, str | bool) else type(value).__name__,
)
def test_a_redis_failure_has_a_kind_and_says_whether_only_writes_are_refused(
    error: BaseException, kind: Kind, refuses_writes: bool
) -> None:
    mapped = unavailable(error, "redis:6379")
    assert mapped is not None
    assert (mapped.kind, mapped.writes_refused) == (kind, refuses_writes)
    assert "Error running script" not in mapped.reason
    assert "@user_script" not in mapped.reason


@pytest.mark.parametrize(
    "error",
    [
        rex.ResponseError("ERR Error running script: @user_script:3: attempt to index a nil value"),
        rex.ResponseError("syntax error"),
        rex.DataError("Invalid input of type: 'dict'"),
        rex.RedisClusterException("No way to dispatch this command to Redis Cluster."),
        ValueError("not a driver error"),
    ],
)
def test_a_redis_error_that_is_our_bug_is_not_mapped(error: BaseException) -> None:
    assert kind_of(error) is None
    with pytest.raises(type(error)), redis_errors("redis:6379"):
        raise error


def test_a_wrapped_script_error_reads_as_the_servers_own_reply() -> None:
    assert reply_text(rex.ResponseError(OOM_62)) == (
        "OOM command not allowed when used memory > 'maxmemory'."
    )
    oom_70 = rex.OutOfMemoryError("command not allowed when used memory > 'maxmemory'." + SCRIPT_70)
    assert reply_text(oom_70).endswith("> 'maxmemory'.")


def test_a_redis_older_than_6_is_named_for_what_it_lacks() -> None:
    error = rex.ResponseError("unknown command `HELLO`, with args beginning with: `3`, ")
    mapped = unavailable(error, "redis:6379")
    assert mapped is not None
    assert mapped.kind == Kind.TOO_OLD
    assert "needs Redis 6.2 or later" in mapped.reason


def _mysql(code: int, message: str = "refused") -> asyncmy.errors.MySQLError:
    return asyncmy.errors.OperationalError(code, message)


@pytest.mark.parametrize(
    ("code", "raised", "kind"),
    [
        (Code.DUPLICATE_ENTRY, DuplicateEntry, None),
        (Code.DATA_TOO_LONG, RowRefused, None),
        (Code.CONSTRAINT_FAILED, RowRefused, None),
        (Code.LOCK_DEADLOCK, MySQLUnavailable, "error 1213"),
        (Code.LOCK_WAIT_TIMEOUT, MySQLUnavailable, "error 1205"),
        (1142, MySQLUnavailable, "error 1142"),  # a revoked right
        (Code.SERVER_SHUTDOWN, MySQLUnavailable, "connection"),
        (2013, MySQLUnavailable, "connection"),  # the driver lost the connection
    ],
)
def test_a_mysql_error_is_mapped_by_its_code(
    code: int, raised: type[Exception], kind: str | None
) -> None:
    with pytest.raises(raised) as caught, mysql_errors("mysql:3306"):
        raise _mysql(code)
    if kind is not None:
        assert isinstance(caught.value, MySQLUnavailable)
        assert caught.value.kind == kind


def test_a_mysql_syntax_error_is_our_bug() -> None:
    with pytest.raises(asyncmy.errors.ProgrammingError), mysql_errors("mysql:3306"):
        raise asyncmy.errors.ProgrammingError(Code.PARSE_ERROR, "You have an error in your SQL")


def test_a_socket_error_under_mysql_is_a_lost_connection() -> None:
    with pytest.raises(MySQLUnavailable, match="connection refused"), mysql_errors("mysql:3306"):
        raise ConnectionRefusedError(111, "Connection refused")


async def _take(items: int, remaining: int) -> Taken:
    return Taken([b"v"] * items, remaining, False)


async def test_committed_lists_are_dropped_by_the_next_take_and_kept_for_it_on_failure() -> None:
    holdings = Holdings()
    holdings.hold("a")
    await holdings.dropping(lambda drop: _take(1, remaining=5))  # votes still queued

    class Batch:
        key = "a"
        dead: Sequence[bytes] = ()

    assert holdings.settle(Batch()) is False  # the next take drops it
    seen: list[Sequence[str]] = []

    async def failing(drop: Sequence[str]) -> Taken:
        seen.append(list(drop))
        raise RedisUnavailable("redis:6379", "timed out")

    with pytest.raises(RedisUnavailable):
        await holdings.dropping(failing)
    assert holdings.holds("a")  # dropped or not, nobody knows: the next take drops it again

    async def lease_lost(drop: Sequence[str]) -> Taken:
        seen.append(list(drop))
        raise LeaseLost("k")

    with pytest.raises(LeaseLost):
        await holdings.dropping(lease_lost)
    assert seen == [["a"], ["a"]]
    assert not holdings.holds("a")  # the script drops them before it checks the lease


async def test_a_batch_with_dead_letters_or_an_empty_queue_is_finished_at_once() -> None:
    holdings = Holdings()

    class WithLetters:
        key = "b"
        dead: Sequence[bytes] = (b"letter",)

    await holdings.dropping(lambda drop: _take(1, remaining=5))
    assert holdings.settle(WithLetters()) is True
    await holdings.dropping(lambda drop: _take(1, remaining=0))

    class Plain:
        key = "c"
        dead: Sequence[bytes] = ()

    assert holdings.settle(Plain()) is True  # no take is coming to drop it


async def test_a_repeated_stop_signal_within_a_second_is_the_same_request(
    autojump_clock: trio.testing.MockClock,
) -> None:
    send, receive = trio.open_memory_channel[int](10)

    async def signals() -> AsyncIterator[int]:
        async for signum in receive:
            yield signum

    stop, give_up = trio.Event(), trio.CancelScope()
    async with trio.open_nursery() as nursery:
        watching = await nursery.start(watch_signals, signals(), stop, give_up)
        await send.send(signal.SIGTERM)
        await trio.sleep(REPEAT_S / 2)
        await send.send(signal.SIGINT)  # a supervisor and the process group both sent one
        await trio.lowlevel.checkpoint()
        assert stop.is_set()
        assert not give_up.cancel_called
        await trio.sleep(REPEAT_S)
        await send.send(signal.SIGTERM)  # a later one: give up draining
        await trio.sleep(0.01)
        assert give_up.cancel_called
        watching.cancel()


def test_a_session_abandoned_while_set_up_is_not_killed_on_a_server_restarted_since() -> None:
    """Given up on before learning its server, a session is known by its id alone; a server
    restarted since gives that id to another client, which must not be killed."""

    def server(uptime_s: float | None, at_steady_s: float) -> Server:
        now = 1_800_000_000.0
        booted = None if uptime_s is None else now - uptime_s
        return Server(7, 1 << 24, "db", 3306, booted, ServerTime(now, at_steady_s))

    abandoned = Abandoned(42, None, at_s=100.0)
    assert abandoned.may_live_on(server(uptime_s=3600, at_steady_s=160.0))  # up an hour
    assert not abandoned.may_live_on(server(uptime_s=20, at_steady_s=160.0))  # restarted since
    assert abandoned.may_live_on(server(uptime_s=None, at_steady_s=160.0))  # it doesn't say
