"""GET /live: the process and its tasks, never the stores (a liveness probe must not restart
workers because MySQL or Redis is down)."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from tests.support.http import get
from trio_worker.config import Config
from trio_worker.liveness import Liveness


async def test_a_busy_task_without_a_step_is_hung_an_idle_one_never(
    autojump_clock: trio.abc.Clock,
) -> None:
    live = Liveness(hung_after_s=45)
    live.busy("flusher-1")
    live.idle("consumer")
    await trio.sleep(44)
    assert live.hung() == []
    live.busy("heartbeat")
    await trio.sleep(2)
    assert live.hung() == ["flusher-1"]
    live.busy("flusher-1")  # a step: progress again
    live.idle("heartbeat")
    await trio.sleep(44)
    assert live.hung() == []
    live.busy("heartbeat")
    await trio.sleep(1000)
    assert live.hung() == ["flusher-1", "heartbeat"]
    live.forget("flusher-1")
    live.idle("heartbeat")
    assert live.hung() == []


@pytest.mark.parametrize(
    ("store", "changes"), [("mysql", {"mysql_port": 1}), ("redis", {"redis_port": 1})]
)
async def test_live_while_a_store_is_down_and_health_says_which(
    config: Config, start_worker: Any, store: str, changes: dict[str, int]
) -> None:
    worker = await start_worker(config, ready=False, **changes)
    await trio.sleep(1.0)  # several retries of the store that is down
    live = await get(worker.url + "/live")
    assert (live.status_code, live.json()) == (200, {"live": True, "hung": []})
    health = await get(worker.url + "/health")
    assert health.status_code == 503
    down = "database" if store == "mysql" else "redis"
    assert health.json()[down] == "disconnected"
    assert (await get(worker.url + "/ready")).status_code == 503


async def test_live_while_running(config: Config, start_worker: Any) -> None:
    worker = await start_worker(config)
    live = await get(worker.url + "/live")
    assert (live.status_code, live.json()) == (200, {"live": True, "hung": []})
