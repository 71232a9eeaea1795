"""What the worker is doing now, as /ready and /health report it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Phase = Literal["starting", "running", "draining", "stopped"]


@dataclass
class Status:
    """Written by the pipeline tasks, read by the HTTP handlers. One Trio thread: no locks."""

    phase: Phase = "starting"
    redis_ok: bool = False
    mysql_ok: bool = False

    @property
    def ready(self) -> bool:
        """Taking work: started, not draining, and neither store cut off."""
        return self.phase == "running" and self.redis_ok and self.mysql_ok
