"""Opening the redis-py client the worker and the operator commands use.

One server (host and port, or a Unix socket), the primary that Redis Sentinel names, or a Redis
Cluster; each with redis-py's own TLS (``ssl_*``), ACL user and password. redis-py's retries are
off everywhere: a script whose reply was lost must not run twice behind our back. Our loops
retry, knowing what each command did (the in-flight list is the truth).
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from functools import partial
from typing import Any

import redis.asyncio as aredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff
from redis.credentials import CredentialProvider
from redis.exceptions import ConnectionError as RedisConnectionError

from trio_worker.config import Config, secrets

Client = aredis.Redis | RedisCluster

CONNECT_TIMEOUT_S = 5.0
# Connections per server (per node in a cluster) of one client. The pipeline's may all be in
# use at once: the consumer's (a blocking one, and the script connection it keeps), three
# flushers, the heartbeat, recovery and the pruner; /health has a client of its own.
MAX_CONNECTIONS = 12


def _no_retry() -> Retry:
    return Retry(NoBackoff(), 0)


class FileCredentials(CredentialProvider):
    """A user name and a password file read again for each new connection (redis-py asks
    its credential provider at every connect), so that a rotated password is picked up
    without a restart: connections already open stay logged in as they were."""

    def __init__(self, username: str | None, read: Callable[[], str | None]) -> None:
        self.username = username
        self.read = read

    def get_credentials(self) -> tuple[str] | tuple[str, str]:
        try:
            password = self.read() or ""
        except secrets.SecretUnreadable as exc:
            # A RedisError, so redis-py closes the half-open connection; the boundary makes it
            # a store failure (retried, 503 meanwhile).
            raise RedisConnectionError(str(exc)) from None
        return (self.username, password) if self.username else (password,)

    async def get_credentials_async(self) -> tuple[str] | tuple[str, str]:
        return self.get_credentials()


def _login(
    username: str | None, password: str | None, path: str | None, read: Callable[[], str | None]
) -> dict[str, Any]:
    """redis-py's login options: a user and password as given, or, for a password from a
    file, a credential provider that reads it again at each connect."""
    if path is None:
        return {"username": username, "password": password}
    return {"credential_provider": FileCredentials(username, read)}


def tls_options(config: Config) -> dict[str, Any]:
    """redis-py's ``ssl_*`` options for ``REDIS_TLS*`` (nothing when TLS is off).

    The certificate is always verified; ``REDIS_TLS_VERIFY=full`` checks the host name too.
    ``REDIS_TLS_CA_FILE`` is trusted besides the system's CAs (redis-py loads both).
    """
    if not config.redis_tls:
        return {}
    return {
        "ssl": True,
        "ssl_ca_certs": config.redis_tls_ca_file,
        "ssl_certfile": config.redis_tls_cert_file,
        "ssl_keyfile": config.redis_tls_key_file,
        "ssl_cert_reqs": "required",
        "ssl_check_hostname": config.redis_tls_verify == "full",
        "ssl_min_version": ssl.TLSVersion.TLSv1_2,
    }


def connect(config: Config) -> Client:
    """A client without a socket timeout: every call is bounded by the boundary's Trio deadline
    (``Boundary.timeout_s``) instead, which also costs no asyncio timer and task per command.

    Nothing is connected yet: connections open on first use, so a server that is down (or a
    certificate that is refused) is a ``RedisUnavailable`` from the first call, retried.
    """
    common: dict[str, Any] = {
        **_login(
            config.redis_username,
            config.redis_password,
            config.redis_password_file,
            partial(secrets.redis_password, config),
        ),
        "socket_timeout": None,  # redis-py's default is 5 s: the boundary's deadline instead
        "socket_connect_timeout": CONNECT_TIMEOUT_S,
        "health_check_interval": 0,
        "retry": _no_retry(),
        "max_connections": MAX_CONNECTIONS,
        **tls_options(config),
    }
    if config.redis_cluster:
        # MOVED and ASK are followed by redis-py (nothing ran); everything else is ours to retry.
        return RedisCluster(host=config.redis_host, port=config.redis_port, **common)
    if config.redis_sentinels:
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            list(config.redis_sentinels),
            sentinel_kwargs={
                **_login(
                    None,
                    config.redis_sentinel_password,
                    config.redis_sentinel_password_file,
                    partial(secrets.redis_sentinel_password, config),
                ),
                "socket_timeout": CONNECT_TIMEOUT_S,
                "socket_connect_timeout": CONNECT_TIMEOUT_S,
                "retry": _no_retry(),
                **tls_options(config),
            },
        )
        # Each new connection asks the Sentinels for the primary; a connection that meets a
        # replica (READONLY after a failover) is dropped, so the next one asks again.
        client: aredis.Redis = sentinel.master_for(
            config.redis_sentinel_master, db=config.redis_db, **common
        )
        return client
    if config.redis_unix_socket:
        return aredis.Redis(unix_socket_path=config.redis_unix_socket, db=config.redis_db, **common)
    return aredis.Redis(
        host=config.redis_host, port=config.redis_port, db=config.redis_db, **common
    )


def sentinel_of(client: Client) -> Sentinel | None:
    """The Sentinel manager behind a client from ``master_for``, if any."""
    if isinstance(client, RedisCluster):
        return None
    pool = client.connection_pool
    if isinstance(pool, SentinelConnectionPool):
        manager: Sentinel = pool.sentinel_manager
        return manager
    return None
