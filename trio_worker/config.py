"""Configuration: read from the environment in exactly one place, validated at start."""

from __future__ import annotations

import os
import re
import secrets
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

_WORKER_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


class ConfigError(ValueError):
    """A configuration value that can't be used; the message names the variable."""

    def __init__(self, variable: str, expected: str, got: str | None = None) -> None:
        detail = f"{variable}: expected {expected}"
        if got is not None:
            detail += f", got {got!r}"
        super().__init__(detail)
        self.variable = variable


@dataclass(frozen=True)
class Config:
    """Everything the worker needs to know, typed, with units in the names."""

    redis_host: str = "localhost"
    redis_port: int = 6379
    redis_db: int = 0
    redis_password: str | None = field(default=None, repr=False)
    vote_queue: str = "votes"
    mysql_host: str = "localhost"
    mysql_port: int = 3306
    mysql_user: str = "root"
    mysql_password: str = field(default="", repr=False)
    mysql_database: str = "voting"
    http_host: str = "0.0.0.0"
    http_port: int = 8080
    batch_size: int = 1000
    flush_interval_s: float = 0.020
    worker_id: str = "worker"
    heartbeat_ttl_s: float = 15.0
    shutdown_timeout_s: float = 25.0
    consume_from: Literal["left", "right"] = "right"
    vote_choices: frozenset[str] | None = None
    dead_letter_queue: str = "votes:dead"
    log_level: str = "info"
    log_format: Literal["json", "text"] = "json"

    @property
    def redis_address(self) -> str:
        return f"{self.redis_host}:{self.redis_port}"

    @property
    def mysql_address(self) -> str:
        return f"{self.mysql_host}:{self.mysql_port}"


def default_worker_id() -> str:
    """Host name plus a random suffix, so that two processes never share an identity."""
    host = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname())[:48] or "worker"
    return f"{host}-{secrets.token_hex(4)}"


def _int(env: Mapping[str, str], name: str, default: int, *, low: int, high: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigError(name, f"a whole number from {low} to {high}", raw) from None
    if not low <= value <= high:
        raise ConfigError(name, f"a whole number from {low} to {high}", raw)
    return value


def _seconds(
    env: Mapping[str, str], name: str, default: float, *, scale: float = 1.0, zero: bool = False
) -> float:
    """A positive number (or zero, where allowed) in the variable's unit, returned in seconds."""
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw.strip())
    except ValueError:
        raise ConfigError(name, "a positive number", raw) from None
    if not ((value > 0 or (zero and value == 0)) and value < 1e9):
        raise ConfigError(name, "a non-negative number" if zero else "a positive number", raw)
    return value * scale


def _text(env: Mapping[str, str], name: str, default: str) -> str:
    raw = env.get(name)
    return default if raw is None or raw.strip() == "" else raw.strip()


def _mysql_password(env: Mapping[str, str]) -> str:
    path = env.get("MYSQL_PASSWORD_FILE")
    if path:
        try:
            # A trailing newline is an artefact of how secret files are written, not a character.
            return Path(path).read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            reason = (
                exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            )
            raise ConfigError("MYSQL_PASSWORD_FILE", f"a readable UTF-8 file ({reason})") from None
    return env.get("MYSQL_PASSWORD", "")


def from_env(env: Mapping[str, str] | None = None) -> Config:
    """Build the configuration from environment variables; raise ConfigError on a bad value."""
    env = os.environ if env is None else env
    queue = _text(env, "VOTE_QUEUE", "votes")
    consume_from = _text(env, "QUEUE_CONSUME_FROM", "right").lower()
    if consume_from not in ("left", "right"):
        raise ConfigError("QUEUE_CONSUME_FROM", "'left' or 'right'", consume_from)
    worker_id = _text(env, "WORKER_ID", "") or default_worker_id()
    if not _WORKER_ID_RE.match(worker_id):
        raise ConfigError("WORKER_ID", "1 to 64 of A-Z a-z 0-9 _ . -", worker_id)
    choices: frozenset[str] | None = None
    raw_choices = env.get("VOTE_CHOICES")
    if raw_choices is not None and raw_choices.strip():
        items = [c.strip() for c in raw_choices.split(",")]
        if any(not c or len(c) > 10 for c in items):
            raise ConfigError(
                "VOTE_CHOICES", "comma-separated votes of 1 to 10 characters", raw_choices
            )
        choices = frozenset(items)
    log_level = _text(env, "LOG_LEVEL", "info").lower()
    if log_level not in _LOG_LEVELS:
        raise ConfigError("LOG_LEVEL", " or ".join(_LOG_LEVELS), log_level)
    default_format = "text" if os.isatty(2) else "json"
    log_format = _text(env, "LOG_FORMAT", default_format).lower()
    if log_format not in ("json", "text"):
        raise ConfigError("LOG_FORMAT", "'json' or 'text'", log_format)
    heartbeat_ttl_s = _seconds(env, "HEARTBEAT_TTL_S", 15.0)
    if heartbeat_ttl_s < 1:
        raise ConfigError(
            "HEARTBEAT_TTL_S", "a number of seconds, at least 1", str(heartbeat_ttl_s)
        )
    return Config(
        redis_host=_text(env, "REDIS_HOST", "localhost"),
        redis_port=_int(env, "REDIS_PORT", 6379, low=1, high=65535),
        redis_db=_int(env, "REDIS_DB", 0, low=0, high=1 << 20),
        redis_password=env.get("REDIS_PASSWORD") or None,
        vote_queue=queue,
        mysql_host=_text(env, "MYSQL_HOST", "localhost"),
        mysql_port=_int(env, "MYSQL_PORT", 3306, low=1, high=65535),
        mysql_user=_text(env, "MYSQL_USER", "root"),
        mysql_password=_mysql_password(env),
        mysql_database=_database_name(_text(env, "MYSQL_DATABASE", "voting")),
        http_host=_text(env, "HOST", "0.0.0.0"),
        http_port=_int(env, "PORT", 8080, low=0, high=65535),
        batch_size=_int(env, "BATCH_SIZE", 1000, low=1, high=100_000),
        flush_interval_s=_seconds(env, "FLUSH_INTERVAL_MS", 0.020, scale=0.001, zero=True),
        worker_id=worker_id,
        heartbeat_ttl_s=heartbeat_ttl_s,
        shutdown_timeout_s=_seconds(env, "SHUTDOWN_TIMEOUT_S", 25.0),
        consume_from="left" if consume_from == "left" else "right",
        vote_choices=choices,
        dead_letter_queue=_text(env, "DEAD_LETTER_QUEUE", f"{queue}:dead"),
        log_level=log_level,
        log_format="text" if log_format == "text" else "json",
    )


def _database_name(name: str) -> str:
    # The name is put into DDL as a quoted identifier; keep it to what needs no escaping.
    if not re.match(r"^[A-Za-z0-9_$-]{1,64}$", name):
        raise ConfigError("MYSQL_DATABASE", "1 to 64 of A-Z a-z 0-9 _ $ -", name)
    return name
