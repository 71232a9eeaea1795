"""``trio-worker check``: validate the configuration and reach both stores.

Each store's line says how it was reached: where (the primary Sentinel named, the node serving
the queue's slot), whether over TLS (the negotiated version and cipher, and what was verified),
and as which user. Never a secret.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import trio

from trio_worker.config import Config
from trio_worker.errors import StoreUnavailable
from trio_worker.mysql.connection import Connection
from trio_worker.mysql.schema import database_exists
from trio_worker.ops.stores import open_mysql, open_queue
from trio_worker.queue import QueueAdmin
from trio_worker.queue.wire import Session

CHECK_TIMEOUT_S = 10.0

Store = Literal["redis", "mysql"]


@dataclass(frozen=True)
class Finding:
    """What ``check`` found about one store: the line it prints, and the same as facts."""

    store: Store
    ok: bool
    text: str
    facts: dict[str, Any] = field(default_factory=dict)


Report = Callable[[Finding], None]
"""How ``check`` reports one finding, as it finds it."""


async def check(config: Config, report: Report) -> bool:
    """Reach both stores and report each; True if both answered.

    MySQL is checked at the server level: the database may not exist yet (``run`` creates it),
    so its absence is reported, not treated as a failure.
    """
    ok = True
    redis_at = {"address": config.redis_address}
    async with open_queue(config) as queue:
        with trio.move_on_after(CHECK_TIMEOUT_S) as scope:
            try:
                ok = _redis_report(config, await _redis_session(queue), report)
            except StoreUnavailable as exc:
                text = str(exc) + _redis_hint(config, exc.reason)
                report(Finding("redis", False, text, redis_at))
                ok = False
        if scope.cancelled_caught:
            report(Finding("redis", False, f"Redis at {config.redis_address}: timed out", redis_at))
            ok = False
        db = config.mysql_database
        mysql_at = {"address": config.mysql_address, "database": db}
        with trio.move_on_after(CHECK_TIMEOUT_S) as scope:
            try:
                version, how, exists = await _mysql_server(config)
            except StoreUnavailable as exc:
                report(Finding("mysql", False, str(exc), mysql_at))
                ok = False
            else:
                state = (
                    f"database {db!r} exists"
                    if exists
                    else f"database {db!r} does not exist yet (`trio-worker run` creates it)"
                )
                text = (
                    f"MySQL at {config.mysql_address}: reachable (server {version}, {how}); {state}"
                )
                facts = {**mysql_at, "server_version": version, "database_exists": exists}
                report(Finding("mysql", True, text, facts))
        if scope.cancelled_caught:
            report(Finding("mysql", False, f"MySQL at {config.mysql_address}: timed out", mysql_at))
            ok = False
    return ok


async def _redis_session(queue: QueueAdmin) -> Session:
    await queue.ping()
    return await queue.boundary.session(queue.keys.queue)


def _redis_hint(config: Config, reason: str) -> str:
    """What a connection dropped before the first answer may mean, for the one who runs check
    (a worker's log keeps to the facts: a server that dies looks the same)."""
    if "reset by peer" not in reason and "closed by server" not in reason.lower():
        return ""
    if not config.redis_tls:
        return " (if the server accepts TLS only, set REDIS_TLS=true)"
    # TLS 1.3 ends the handshake before the server checks a client certificate: its alert
    # may lose the race with the reset.
    return " (did the server refuse our client certificate? REDIS_TLS_CERT_FILE)"


def _redis_report(config: Config, facts: Session, report: Report) -> bool:
    """One line for Redis; False (and an error line) for a setting the server contradicts."""
    where = config.redis_address
    known: dict[str, Any] = {
        "address": where,
        "server": facts.server,
        "user": facts.user,
        "tls": facts.tls,
    }
    if facts.cluster_node and not config.redis_cluster:
        text = f"Redis at {where}: a Redis Cluster node: set REDIS_CLUSTER=true"
        report(Finding("redis", False, text, known))
        return False
    parts = []
    if config.redis_sentinels:
        parts.append(f"primary {facts.server}")
    elif config.redis_cluster:
        parts.append(f"the queue's slot on {facts.server}")
    elif config.redis_unix_socket:
        parts.append("Unix socket")
    if facts.tls is None:
        parts.append("plain text")
    else:
        verified = (
            "certificate and host name verified"
            if config.redis_tls_verify == "full"
            else "certificate verified, not the host name"
        )
        client_cert = ", client certificate" if config.redis_tls_cert_file else ""
        parts.append(f"{facts.tls}, {verified}{client_cert}")
    parts.append(f"user {facts.user!r}")
    wanted = config.redis_wait_replicas
    if wanted:
        replicas = f"{facts.replicas} replica{'' if facts.replicas == 1 else 's'}"
        parts.append(f"{replicas} connected, REDIS_WAIT_REPLICAS={wanted}")
    text = f"Redis at {where}: reachable ({', '.join(parts)})"
    if wanted:
        known["replicas"] = facts.replicas
    if wanted > facts.replicas:
        report(Finding("redis", False, f"{text}: too few replicas, no batch would commit", known))
        return False
    report(Finding("redis", True, text, known))
    return True


async def _mysql_server(config: Config) -> tuple[str, str, bool]:
    """The server's version, how we are connected, and whether the configured database exists."""
    async with open_mysql(config) as conn:
        version = (await conn.execute("SELECT VERSION()"))[0][0]
        how = await _mysql_session(conn, config)
        exists = await database_exists(conn, config.mysql_database)
        await conn.commit()
    return str(version), how, exists


async def _mysql_session(conn: Connection, config: Config) -> str:
    rows = await conn.execute(
        "SHOW SESSION STATUS WHERE Variable_name IN ('Ssl_version', 'Ssl_cipher')"
    )
    status = {str(name): str(value) for name, value in rows}
    user = str((await conn.execute("SELECT CURRENT_USER()"))[0][0])
    parts = ["Unix socket"] if config.mysql_unix_socket else []
    mode = config.mysql_ssl_mode
    if status.get("Ssl_version"):
        verified = {
            "VERIFY_IDENTITY": "certificate and host name verified",
            "VERIFY_CA": "certificate verified, not the host name",
        }.get(mode, f"not verified: MYSQL_SSL_MODE={mode}")
        client_cert = ", client certificate" if config.mysql_ssl_cert else ""
        cipher = status.get("Ssl_cipher", "")
        parts.append(
            f"{status['Ssl_version']} {cipher}, {verified}{client_cert}".replace("  ", " ")
        )
    elif mode == "PREFERRED" and not config.mysql_unix_socket:
        parts.append("plain text: the server offers no TLS")
    else:
        parts.append("plain text")
    parts.append(f"user {user!r}")
    return ", ".join(parts)
