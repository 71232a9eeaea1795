"""Every environment variable the worker reads: the one list behind ``--help`` and the docs.

``from_env`` reads exactly these (a test holds it to that), and the README's tables show them.
"""

from __future__ import annotations

from typing import NamedTuple


class Variable(NamedTuple):
    name: str
    default: str
    meaning: str


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
    Variable("DEAD_LETTER_QUEUE", "<VOTE_QUEUE>:dead", "where invalid messages go"),
    Variable("VOTE_CHOICES", "unset", "comma-separated allow-list of votes"),
    Variable("BATCH_SIZE", "2000", "most votes committed in one MySQL transaction"),
    Variable("FLUSH_INTERVAL_MS", "20", "longest a vote waits for its batch to fill"),
    Variable("MAX_MESSAGE_BYTES", "65536", "longer messages are dead-lettered as too_large"),
    Variable("WORKER_ID", "host name + random", "this process's identity (A-Z a-z 0-9 _ . -)"),
    Variable(
        "HEARTBEAT_TTL_S",
        "15",
        "after this long without a heartbeat, a worker's votes are taken over",
    ),
    Variable("SHUTDOWN_TIMEOUT_S", "25", "longest a SIGTERM drain may take"),
    Variable("LEDGER_RETENTION_S", "604800", "ledger rows are kept this long (30 and up)"),
    Variable("HOST", "0.0.0.0", "HTTP address"),
    Variable("PORT", "8080", "HTTP port"),
    Variable("LOG_LEVEL", "info", "debug, info, warning, error or critical"),
    Variable("LOG_FORMAT", "json (text on a terminal)", "json or text"),
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
    Variable("REDIS_USERNAME", "unset", "Redis ACL user (Redis 6+)"),
    Variable("REDIS_PASSWORD", "unset", "Redis password"),
    Variable(
        "REDIS_PASSWORD_FILE",
        "unset",
        "read the Redis password from this file, again for each new connection",
    ),
    Variable(
        "REDIS_URL",
        "unset",
        "redis://[user[:password]@]host[:port][/db], rediss://... (TLS) or"
        " unix:///path[?db=N]; excludes REDIS_HOST/PORT/DB/PASSWORD/USERNAME",
    ),
    Variable("REDIS_TLS", "false", "TLS to Redis (implied by rediss://)"),
    Variable("REDIS_TLS_CA_FILE", "system CAs", "CA bundle to verify the Redis server"),
    Variable("REDIS_TLS_CERT_FILE", "unset", "client certificate, for mutual TLS"),
    Variable("REDIS_TLS_KEY_FILE", "unset", "the client certificate's key"),
    Variable("REDIS_TLS_VERIFY", "full", "full: certificate and host name; ca: certificate only"),
    Variable("REDIS_SENTINELS", "unset", "host:port,...: find the primary through Redis Sentinel"),
    Variable("REDIS_SENTINEL_MASTER", "mymaster", "the Sentinel service name"),
    Variable("REDIS_SENTINEL_PASSWORD", "unset", "password of the Sentinels themselves"),
    Variable(
        "REDIS_SENTINEL_PASSWORD_FILE",
        "unset",
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
    Variable("MYSQL_UNIX_SOCKET", "unset", "connect through this socket instead of host and port"),
    Variable("MYSQL_USER", "root", "MySQL user"),
    Variable("MYSQL_PASSWORD", "empty", "MySQL password"),
    Variable(
        "MYSQL_PASSWORD_FILE",
        "unset",
        "read the MySQL password from this file, again for each new connection",
    ),
    Variable(
        "MYSQL_DATABASE", "voting", "created with its tables if missing, where the account may"
    ),
    Variable(
        "MYSQL_SSL_MODE",
        "PREFERRED",
        "DISABLED, PREFERRED, REQUIRED, VERIFY_CA or VERIFY_IDENTITY (VERIFY_CA if only"
        " MYSQL_SSL_CA is set)",
    ),
    Variable("MYSQL_SSL_CA", "system CAs", "CA to verify the server (VERIFY_CA, VERIFY_IDENTITY)"),
    Variable("MYSQL_SSL_CERT", "unset", "client certificate"),
    Variable("MYSQL_SSL_KEY", "unset", "the client certificate's key"),
    Variable(
        "MYSQL_READ_TIMEOUT_S",
        "30",
        "a MySQL server that stops answering is given up on after this long",
    ),
)

ALL = GENERAL + REDIS + MYSQL
NAMES = frozenset(v.name for v in ALL)


def help_text() -> str:
    """The variables as ``--help`` shows them."""
    lines = [
        "A secret is given once: X or X_FILE, never both. produce and dlq read no MYSQL_*.",
        "",
    ]
    for title, group in (("general", GENERAL), ("Redis", REDIS), ("MySQL", MYSQL)):
        lines.append(f"{title}:")
        for v in group:
            lines.append(f"  {v.name} (default {v.default})")
            lines.append(f"      {v.meaning}")
    return "\n".join(lines)
