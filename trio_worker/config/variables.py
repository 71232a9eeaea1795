"""Every environment variable the worker reads, and its default: the one list behind the
reader (``config.reader``), ``--help`` and the docs.

``from_env`` reads exactly these, takes every default from here (a test holds it to both), and
the README's and the contract's tables show them with these defaults (another test).
"""

from __future__ import annotations

from typing import NamedTuple


class Variable(NamedTuple):
    name: str
    # What an unset variable means, as the environment would say it; None: none (unset), or one
    # computed at start, which ``shown`` says in words.
    default: str | None
    meaning: str
    shown: str | None = None

    @property
    def documented(self) -> str:
        """The default as ``--help`` and the docs say it."""
        if self.shown is not None:
            return self.shown
        return "unset" if self.default is None else self.default


GENERAL = (
    Variable(
        "VOTE_QUEUE",
        "votes",
        "the Redis list; every key the worker writes starts with <VOTE_QUEUE>:",
    ),
    Variable(
        "QUEUE_CONSUME_FROM",
        "right",
        "the end taken from: right for LPUSH producers, left for RPUSH",
    ),
    Variable("DEAD_LETTER_QUEUE", None, "where invalid messages go", "<VOTE_QUEUE>:dead"),
    Variable("VOTE_CHOICES", None, "comma-separated allow-list of votes"),
    Variable("BATCH_SIZE", "2000", "most votes committed in one MySQL transaction"),
    Variable("FLUSH_INTERVAL_MS", "20", "longest a vote waits for its batch to fill"),
    Variable("MAX_MESSAGE_BYTES", "65536", "longer messages are dead-lettered as too_large"),
    Variable(
        "WORKER_ID",
        None,
        "this process's identity (A-Z a-z 0-9 _ . -)",
        "host name + random suffix",
    ),
    Variable(
        "HEARTBEAT_TTL_S",
        "15",
        "after this long without a heartbeat, a worker's votes are taken over",
    ),
    Variable("SHUTDOWN_TIMEOUT_S", "25", "longest a SIGTERM drain may take"),
    Variable(
        "LEDGER_RETENTION_S",
        "604800",
        "ledger rows are kept this long (30 and up)",
        "604800 (7 days)",
    ),
    Variable("HOST", "0.0.0.0", "HTTP address"),
    Variable("PORT", "8080", "HTTP port"),
    Variable("LOG_LEVEL", "info", "debug, info, warning, error or critical"),
    Variable("LOG_FORMAT", None, "json or text", "json (text when stderr is a terminal)"),
    Variable(
        "TRIO_ASYNCIO_FAST_PATH",
        "true",
        "run trio-asyncio's callbacks in fewer Trio steps (only on a trio-asyncio release it was"
        " verified on; otherwise, or when false, the stock loop runs and one line says why)",
    ),
)

REDIS = (
    Variable("REDIS_HOST", "localhost", "Redis host"),
    Variable("REDIS_PORT", "6379", "Redis port (never tcp://...: enableServiceLinks: false)"),
    Variable("REDIS_DB", "0", "Redis database number"),
    Variable("REDIS_USERNAME", None, "Redis ACL user (Redis 6+)"),
    Variable("REDIS_PASSWORD", None, "Redis password"),
    Variable(
        "REDIS_PASSWORD_FILE",
        None,
        "read the Redis password from this file, again for each new connection",
    ),
    Variable(
        "REDIS_URL",
        None,
        "redis://[user[:password]@]host[:port][/db], rediss://... (TLS) or"
        " unix:///path[?db=N]; excludes REDIS_HOST/PORT/DB/PASSWORD/USERNAME",
    ),
    Variable("REDIS_TLS", None, "TLS to Redis (implied by rediss://)", "false"),
    Variable(
        "REDIS_TLS_CA_FILE", None, "CA bundle to verify the Redis server", "unset (system CAs)"
    ),
    Variable("REDIS_TLS_CERT_FILE", None, "client certificate, for mutual TLS"),
    Variable("REDIS_TLS_KEY_FILE", None, "the client certificate's key"),
    Variable("REDIS_TLS_VERIFY", "full", "full: certificate and host name; ca: certificate only"),
    Variable("REDIS_SENTINELS", None, "host:port,...: find the primary through Redis Sentinel"),
    Variable("REDIS_SENTINEL_MASTER", "mymaster", "the Sentinel service name"),
    Variable("REDIS_SENTINEL_PASSWORD", None, "password of the Sentinels themselves"),
    Variable(
        "REDIS_SENTINEL_PASSWORD_FILE",
        None,
        "read that password from this file, again for each new connection",
    ),
    Variable(
        "REDIS_WAIT_REPLICAS", "0", "a batch commits only once its take reached this many replicas"
    ),
    Variable("REDIS_CLUSTER", "false", "Redis Cluster; VOTE_QUEUE must carry a hash tag: {votes}"),
)

MYSQL = (
    Variable("MYSQL_HOST", "localhost", "MySQL or MariaDB host"),
    Variable("MYSQL_PORT", "3306", "MySQL port (never tcp://...: enableServiceLinks: false)"),
    Variable("MYSQL_UNIX_SOCKET", None, "connect through this socket instead of host and port"),
    Variable("MYSQL_USER", "root", "MySQL user"),
    Variable("MYSQL_PASSWORD", None, "MySQL password", "empty"),
    Variable(
        "MYSQL_PASSWORD_FILE",
        None,
        "read the MySQL password from this file, again for each new connection",
    ),
    Variable(
        "MYSQL_DATABASE", "voting", "created with its tables if missing, where the account may"
    ),
    Variable(
        "MYSQL_SSL_MODE",
        None,
        "DISABLED, PREFERRED, REQUIRED, VERIFY_CA or VERIFY_IDENTITY",
        "PREFERRED (VERIFY_CA when only MYSQL_SSL_CA is set)",
    ),
    Variable(
        "MYSQL_SSL_CA",
        None,
        "CA to verify the server (VERIFY_CA, VERIFY_IDENTITY)",
        "unset (system CAs)",
    ),
    Variable("MYSQL_SSL_CERT", None, "client certificate"),
    Variable("MYSQL_SSL_KEY", None, "the client certificate's key"),
    Variable(
        "MYSQL_READ_TIMEOUT_S",
        "30",
        "a MySQL server that stops answering is given up on after this long",
    ),
)

ALL = GENERAL + REDIS + MYSQL
NAMES = frozenset(v.name for v in ALL)
DEFAULTS = {v.name: v.default for v in ALL}


def help_text() -> str:
    """The variables as ``--help`` shows them."""
    lines = [
        "A secret is given once: X or X_FILE, never both. produce and dlq read no MYSQL_*.",
        "",
    ]
    for title, group in (("general", GENERAL), ("Redis", REDIS), ("MySQL", MYSQL)):
        lines.append(f"{title}:")
        for v in group:
            lines.append(f"  {v.name} (default {v.documented})")
            lines.append(f"      {v.meaning}")
    return "\n".join(lines)
