"""Secrets the tests give the worker and its stores, and where one shows that must not.

The passwords are random per run, so that a test can look for them in logs, errors and HTTP
answers: they must never appear there.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable

REDIS_PASSWORD = f"redis-pw-{secrets.token_hex(8)}"
MYSQL_PASSWORD = f"mysql-pw-{secrets.token_hex(8)}"
# The Redis ACL user: only keys under the tests' queues (``tw...``), no dangerous command
# but INFO (for ``check``). The least a worker needs (docs/operations.md shows it).
REDIS_USER_ACL = [
    "worker",
    "on",
    f">{REDIS_PASSWORD}",
    "resetchannels",
    "~tw*",
    "-@all",
    "+@read",
    "+@write",
    "+@scripting",
    "-@dangerous",
    "+ping",
    "+wait",
    "+client|reply",
    "+acl|whoami",
    "+info",
]
# The tests' own user on the ACL servers (the worker's user may not list clients).
ADMIN_ACL = ["admin", "on", f">{REDIS_PASSWORD}-admin", "~*", "&*", "+@all"]


def secrets_shown(texts: dict[str, str], hidden: Iterable[str]) -> list[str]:
    """Where any of ``hidden`` shows in ``texts`` (name → text)."""
    return [
        f"{secret!r} in {name}"
        for name, text in texts.items()
        for secret in hidden
        if secret in text
    ]
