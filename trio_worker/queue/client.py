"""Opening the redis-py client the worker and the operator commands use."""

from __future__ import annotations

import redis.asyncio as aredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from trio_worker.config import Config


def connect(config: Config, *, block_s: float) -> aredis.Redis:
    """A client whose socket timeout stays above any blocking command's timeout (redis-py #2807).

    redis-py's own retries are off: a script whose reply was lost must not run twice behind our
    back. Our loops retry, knowing what each command did (the in-flight list is the truth).
    """
    where: dict[str, object] = (
        {"unix_socket_path": config.redis_unix_socket}
        if config.redis_unix_socket
        else {"host": config.redis_host, "port": config.redis_port}
    )
    return aredis.Redis(
        **where,  # type: ignore[arg-type]
        db=config.redis_db,
        username=config.redis_username,
        password=config.redis_password,
        socket_timeout=block_s + 5.0,
        socket_connect_timeout=5.0,
        health_check_interval=0,
        retry=Retry(NoBackoff(), 0),
        max_connections=8,
    )
