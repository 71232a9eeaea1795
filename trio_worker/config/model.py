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


@dataclass(frozen=True, kw_only=True)
class Config:
    """Everything the worker needs to know. Secrets are kept out of ``repr``. No field has a
    default of its own: ``from_env`` fills each from the environment or the variable table
    (``variables``), the one place defaults live."""

    # Redis: one server (host and port, or a Unix socket), Sentinel, or Cluster.
    redis_host: str
    redis_port: int
    redis_db: int
    redis_unix_socket: str | None
    redis_username: str | None
    redis_password: str | None = field(repr=False)
    # Where a password given as a file came from: read again for every new connection
    # (``config.secrets``), so that a rotated password is picked up without a restart.
    redis_password_file: str | None
    redis_tls: bool
    redis_tls_ca_file: str | None
    redis_tls_cert_file: str | None
    redis_tls_key_file: str | None
    redis_tls_verify: Literal["full", "ca"]
    redis_sentinels: tuple[tuple[str, int], ...]
    redis_sentinel_master: str
    redis_sentinel_password: str | None = field(repr=False)
    redis_sentinel_password_file: str | None
    redis_wait_replicas: int
    redis_cluster: bool
    vote_queue: str
    # MySQL
    mysql_host: str
    mysql_port: int
    mysql_unix_socket: str | None
    mysql_user: str
    mysql_password: str = field(repr=False)
    mysql_password_file: str | None
    mysql_database: str
    mysql_ssl_mode: SSLMode
    mysql_ssl_ca: str | None
    mysql_ssl_cert: str | None
    mysql_ssl_key: str | None
    mysql_read_timeout_s: float
    # False for a command that needs only Redis: the MySQL variables were not read, and the
    # fields above are defaults, not settings (``from_env(mysql=False)``).
    mysql_configured: bool
    # The worker
    http_host: str
    http_port: int
    batch_size: int
    flush_interval_s: float
    max_message_bytes: int
    worker_id: str
    heartbeat_ttl_s: float
    shutdown_timeout_s: float
    ledger_retention_s: int
    consume_from: Literal["left", "right"]
    vote_choices: frozenset[str] | None
    dead_letter_queue: str
    log_level: str
    log_format: Literal["json", "text"]
    trio_asyncio_fast_path: bool

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
