"""Every key the worker writes, all under ``<queue>:``."""

from __future__ import annotations

import re
from dataclasses import dataclass

_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


@dataclass(frozen=True)
class Keys:
    queue: str
    dead: str

    @property
    def registry(self) -> str:
        """The set of every in-flight list, whoever holds it."""
        return f"{self.queue}:inflight"

    def inflight(self, worker_id: str, batch_id: str) -> str:
        return f"{self.queue}:inflight:{worker_id}:{batch_id}"

    def large(self, batch_id: str, position: int) -> str:
        """The list that keeps an oversized message, byte for byte, once its batch is done."""
        return f"{self.queue}:large:{batch_id}:{position}"

    def is_large(self, key: str) -> bool:
        return key.startswith(f"{self.queue}:large:")

    @property
    def settings(self) -> str:
        """A hash: each live worker's settings that others must agree with, by worker id."""
        return f"{self.queue}:settings"

    def heartbeat(self, worker_id: str) -> str:
        return f"{self.queue}:worker:{worker_id}"

    def split_inflight(self, key: str) -> tuple[str, str] | None:
        """``(worker_id, batch_id)`` of an in-flight key, or None if it isn't one."""
        prefix = f"{self.queue}:inflight:"
        if not key.startswith(prefix):
            return None
        owner, sep, batch_id = key[len(prefix) :].partition(":")
        if sep and _NAME.fullmatch(owner) and _NAME.fullmatch(batch_id):
            return owner, batch_id
        return None
