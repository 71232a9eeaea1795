"""What the worker relies on inside its dependencies, beyond their documented interfaces.

Each ``Reliance`` names a private attribute of a library, what the worker uses it for, and what
it does instead where the installed release lacks it: an upgrade that renames one degrades a
speed-up or a detail of a message, never the exactly-once path, and never crashes the worker.
``report`` logs, once at start, one line per reliance that is missing; the modules that use one
ask ``present`` (cached) before they do. trio-asyncio's fast path checks its own, wider needs
(``loop.unusable``), as its version also has to be one it was verified on.

``tests/test_dependencies.py`` fails, naming the attribute, when the release the image ships
(``requirements.lock``) lacks any of them.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("trio_worker.compat")


@dataclass(frozen=True)
class Reliance:
    name: str  # "redis.asyncio.Connection._reader"
    used_for: str
    fallback: str
    check: Callable[[], bool]


def _redis_connection_has(attribute: str) -> Callable[[], bool]:
    def check() -> bool:
        import redis.asyncio

        return hasattr(redis.asyncio.Connection(), attribute)  # nothing connects here

    return check


def _asyncmy_has(attribute: str) -> Callable[[], bool]:
    def check() -> bool:
        import asyncmy.connection

        return hasattr(asyncmy.connection.Connection, attribute)

    return check


REDIS_READER = Reliance(
    "redis.asyncio.Connection._reader",
    "to tell whether a script connection kept between calls was closed by the server while idle",
    "scripts borrow a pool connection for every call (redis-py's own checks, a little slower)",
    _redis_connection_has("_reader"),
)
REDIS_WRITER = Reliance(
    "redis.asyncio.Connection._writer",
    "`trio-worker check`: the TLS version and cipher a connection uses",
    "`check` says 'TLS' without the version and cipher",
    _redis_connection_has("_writer"),
)
ASYNCMY_TRANSPORT = Reliance(
    "asyncmy.connection.Connection._transport",
    "closing a MySQL connection at once, TLS included (abort, no close_notify exchange)",
    "the driver's own close: a TLS socket may stay open until the server answers",
    _asyncmy_has("_transport"),
)
ASYNCMY_AUTHENTICATION = Reliance(
    "asyncmy.connection.Connection._request_authentication",
    "MYSQL_SSL_MODE=PREFERRED: TLS only when the server's greeting offers it",
    "PREFERRED asks for TLS whatever the server offers (a server without TLS is refused: set"
    " MYSQL_SSL_MODE=DISABLED for it)",
    _asyncmy_has("_request_authentication"),
)
ALL = (REDIS_READER, REDIS_WRITER, ASYNCMY_TRANSPORT, ASYNCMY_AUTHENTICATION)


@functools.cache
def present(reliance: Reliance) -> bool:
    """Whether the installed library has what ``reliance`` names (checked once a process)."""
    try:
        return reliance.check()
    except Exception:  # a library that changed shape enough to fail the check itself
        return False


def missing() -> list[Reliance]:
    return [reliance for reliance in ALL if not present(reliance)]


def report() -> None:
    """One warning line per reliance the installed libraries lack."""
    for reliance in missing():
        log.warning(
            "a dependency lacks %s (%s): %s",
            reliance.name,
            reliance.used_for,
            reliance.fallback,
        )


def redis_reader_visible() -> bool:
    return present(REDIS_READER)
