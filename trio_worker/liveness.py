"""Liveness: whether the process's tasks still make progress, whatever the stores' state.

Each long-running task says when it is working (``busy``, again at every step, which also
proves progress) and when it is only waiting for input (``idle``: an empty queue, no batch to
commit, no flusher free). A task that stays busy without a new step for ``hung_after_s`` is
hung: every store call is bounded (MySQL by MYSQL_READ_TIMEOUT_S, Redis by its call deadline),
and a retry loop steps at every attempt, so a store outage never looks like a hang. ``GET /live``
fails while any task is hung; a task that dies ends the process.
"""

from __future__ import annotations

import trio

# Slack above the longest store call and backoff sleep before a silent task counts as hung.
SLACK_S = 15.0


class Liveness:
    def __init__(self, hung_after_s: float) -> None:
        self.hung_after_s = hung_after_s
        self._busy_since: dict[str, float | None] = {}

    def busy(self, task: str) -> None:
        """``task`` works, and has just made a step."""
        self._busy_since[task] = trio.current_time()

    def idle(self, task: str) -> None:
        """``task`` waits for input: however long, it is not hung."""
        self._busy_since[task] = None

    def forget(self, task: str) -> None:
        """``task`` has ended (a drain): it no longer counts."""
        self._busy_since.pop(task, None)

    def hung(self) -> list[str]:
        """The tasks busy for longer than ``hung_after_s`` without a step."""
        now = trio.current_time()
        return sorted(
            task
            for task, since in self._busy_since.items()
            if since is not None and now - since > self.hung_after_s
        )
