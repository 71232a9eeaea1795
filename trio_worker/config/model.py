"""The configuration: one frozen, typed object, units in the names."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

SSLMode = Literal["DISABLED", "PREFERRED", "REQUIRED", "VERIFY_CA", "VERIFY_IDENTITY"]
SSL_MODES: tuple[SSLMode, ...] = (
    "DISABLED",
    "PREFERRED",
    "REQUIRED",
    "VERIFY_CA",
    "VERIFY_IDENTITY",
)


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
    """Everything the worker needs to know. Secrets are kept out of ``repr``."""

    # Redis: one server (host and port, or a Unix socket), Sentinel, or Cluster.
    redis_host: str = "localhost"
    redis_port: int = 6379
    redis_db: int = 0
    redis_unix_socket: str | None = None
    redis_username: str | None = None
    redis_password: str | None = field(default=None, repr=False)
    # Where a password given as a file came from: read again for every new connection
    # (``config.secrets``), so that a rotated password is picked up without a restart.
    redis_password_file: str | None = None
    redis_tls: bool = False
    redis_tls_ca_file: str | None = None
    redis_tls_cert_file: str | None = None
    redis_tls_key_file: str | None = None
    redis_tls_verify: Literal["full", "ca"] = "full"
    redis_sentinels: tuple[tuple[str, int], ...] = ()
    redis_sentinel_master: str = "mymaster"
    redis_sentinel_password: str | None = field(default=None, repr=False)
    redis_sentinel_password_file: str | None = None
    redis_wait_replicas: int = 0
    redis_cluster: bool = False
    vote_queue: str = "votes"
    # MySQL
    mysql_host: str = "localhost"
    mysql_port: int = 3306
    mysql_unix_socket: str | None = None
    mysql_user: str = "root"
    mysql_password: str = field(default="", repr=False)
    mysql_password_file: str | None = None
    mysql_database: str = "voting"
    mysql_ssl_mode: SSLMode = "PREFERRED"
    mysql_ssl_ca: str | None = None
    mysql_ssl_cert: str | None = None
    mysql_ssl_key: str | None = None
    mysql_read_timeout_s: float = 30.0
    # False for a command that needs only Redis: the MySQL variables were not read, and the
    # fields above are defaults, not settings (``from_env(mysql=False)``).
    mysql_configured: bool = True
    # The worker
    http_host: str = "0.0.0.0"
    http_port: int = 8080
    batch_size: int = 2000
    flush_interval_s: float = 0.020
    max_message_bytes: int = 65536
    worker_id: str = "worker"
    heartbeat_ttl_s: float = 15.0
    shutdown_timeout_s: float = 25.0
    ledger_retention_s: int = 7 * 24 * 3600
    consume_from: Literal["left", "right"] = "right"
    vote_choices: frozenset[str] | None = None
    dead_letter_queue: str = "votes:dead"
    log_level: str = "info"
    log_format: Literal["json", "text"] = "json"
    trio_asyncio_fast_path: bool = True

    @property
    def redis_address(self) -> str:
        """Where Redis is, for messages (never a secret)."""
        if self.redis_sentinels:
            via = ",".join(f"{h}:{p}" for h, p in self.redis_sentinels)
            return f"{self.redis_sentinel_master} via Sentinel {via}"
        if self.redis_unix_socket:
            return f"unix:{self.redis_unix_socket}"
        return f"{self.redis_host}:{self.redis_port}"

    @property
    def mysql_address(self) -> str:
        if self.mysql_unix_socket:
            return f"unix:{self.mysql_unix_socket}"
        return f"{self.mysql_host}:{self.mysql_port}"
