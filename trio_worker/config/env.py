"""``from_env``: the environment, read in exactly one place and validated at start."""

from __future__ import annotations

import os
import re
import secrets
import socket
from collections.abc import Mapping
from typing import Any

from trio_worker.config.connections import check_cluster_queue, mysql_settings, redis_settings
from trio_worker.config.model import Config, ConfigError
from trio_worker.config.reader import Env

_WORKER_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
# Redis refuses a string over 512 MiB; a message must at least hold a vote.
MAX_MESSAGE_BYTES_RANGE = (256, 512 * 1024 * 1024)


def default_worker_id() -> str:
    """Host name plus a random suffix, so that two processes never share an identity."""
    host = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname())[:48] or "worker"
    return f"{host}-{secrets.token_hex(4)}"


def from_env(environ: Mapping[str, str] | None = None, *, mysql: bool = True) -> Config:
    """Build the configuration from environment variables; raise ConfigError on a bad value.

    ``mysql=False`` is for a command that needs only Redis (``produce``, ``dlq``): the MySQL
    variables are then not read at all, so a MySQL-only setting it has no use for (a CA file
    that exists only where the workers run) can't stop it. Its ``Config`` says so
    (``mysql_configured``), and ``ops.stores.open_mysql`` refuses it.
    """
    return read(Env(os.environ if environ is None else environ), mysql=mysql)


def read(env: Env, *, mysql: bool = True) -> Config:
    """``from_env`` over a reader (which then knows every variable that was read)."""
    queue = env.text("VOTE_QUEUE")
    dead = env.text("DEAD_LETTER_QUEUE", f"{queue}:dead")
    worker_id = env.optional("WORKER_ID") or default_worker_id()
    if not _WORKER_ID_RE.match(worker_id):
        raise ConfigError("WORKER_ID", "1 to 64 of A-Z a-z 0-9 _ . -", worker_id)
    choices: frozenset[str] | None = None
    raw_choices = env.raw("VOTE_CHOICES")
    if raw_choices is not None:
        items = [c.strip() for c in raw_choices.split(",")]
        if any(not c or len(c) > 10 for c in items):
            raise ConfigError(
                "VOTE_CHOICES", "comma-separated votes of 1 to 10 characters", raw_choices
            )
        choices = frozenset(items)
    default_format = "text" if os.isatty(2) else "json"
    check_cluster_queue(env, queue, dead)
    low, high = MAX_MESSAGE_BYTES_RANGE
    return Config(
        **redis_settings(env),
        # Without MySQL, its fields are the defaults, not settings (``mysql_configured``).
        **(_mysql(env) if mysql else {**_mysql(Env({})), "mysql_configured": False}),
        vote_queue=queue,
        http_host=env.text("HOST"),
        http_port=env.integer("PORT", low=0, high=65535),
        batch_size=env.integer("BATCH_SIZE", low=1, high=100_000),
        flush_interval_s=env.seconds("FLUSH_INTERVAL_MS", scale=0.001, zero=True),
        max_message_bytes=env.integer("MAX_MESSAGE_BYTES", low=low, high=high),
        worker_id=worker_id,
        heartbeat_ttl_s=env.seconds("HEARTBEAT_TTL_S", at_least=1),
        shutdown_timeout_s=env.seconds("SHUTDOWN_TIMEOUT_S"),
        ledger_retention_s=env.integer("LEDGER_RETENTION_S", low=30, high=10 * 365 * 86400),
        consume_from="left"
        if env.choice("QUEUE_CONSUME_FROM", ("left", "right")) == "left"
        else "right",
        vote_choices=choices,
        dead_letter_queue=dead,
        log_level=env.choice("LOG_LEVEL", _LOG_LEVELS),
        log_format="text"
        if env.choice("LOG_FORMAT", ("json", "text"), otherwise=default_format) == "text"
        else "json",
        trio_asyncio_fast_path=env.flag("TRIO_ASYNCIO_FAST_PATH"),
    )


def _mysql(env: Env) -> dict[str, Any]:
    """The Config fields for MySQL: where, who, and how long to wait for it."""
    password = env.secret("MYSQL_PASSWORD", "MYSQL_PASSWORD_FILE")
    return {
        **mysql_settings(env),
        "mysql_configured": True,
        "mysql_user": env.text("MYSQL_USER"),
        "mysql_password": password.value or "",
        "mysql_password_file": password.path,
        "mysql_database": _database_name(env.text("MYSQL_DATABASE")),
        "mysql_read_timeout_s": env.seconds("MYSQL_READ_TIMEOUT_S", at_least=1),
    }


def _database_name(name: str) -> str:
    # The name is put into DDL as a quoted identifier; keep it to what needs no escaping.
    if not re.match(r"^[A-Za-z0-9_$-]{1,64}$", name):
        raise ConfigError("MYSQL_DATABASE", "1 to 64 of A-Z a-z 0-9 _ $ -", name)
    return name
