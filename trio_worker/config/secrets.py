"""Secrets as they are now: a password given as a file is read again for every new connection.

A Kubernetes Secret mounted as a volume is updated in place when it changes (an atomic swap of
the directory's link), and a Docker secret can be replaced by the orchestrator: reading the file
at each connection lets a rotated password (file updated, old sessions ended) be picked up
without a restart. Reading it at start only proved it readable then.
"""

from __future__ import annotations

from pathlib import Path

from trio_worker.config.model import Config
from trio_worker.config.reader import secret_text, unreadable


class SecretUnreadable(OSError):
    """A secret file that could be read at start can't be now: a store failure (retried, and
    said in the log and by ``/health``), never a crash."""


def current(variable: str, value: str | None, path: str | None) -> str | None:
    """The secret now: ``path``'s content if it came from a file, else ``value`` as given."""
    if path is None:
        return value
    try:
        return secret_text(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        reason = unreadable(exc)
    # Raised outside the handler: the reason names the variable, and no chained error (whose
    # text a store's error boundary might prefer) stands behind it.
    raise SecretUnreadable(f"{variable} could not be read ({reason})")


def mysql_password(config: Config) -> str:
    return current("MYSQL_PASSWORD_FILE", config.mysql_password, config.mysql_password_file) or ""


def redis_password(config: Config) -> str | None:
    return current("REDIS_PASSWORD_FILE", config.redis_password, config.redis_password_file)


def redis_sentinel_password(config: Config) -> str | None:
    return current(
        "REDIS_SENTINEL_PASSWORD_FILE",
        config.redis_sentinel_password,
        config.redis_sentinel_password_file,
    )
