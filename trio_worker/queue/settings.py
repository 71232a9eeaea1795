"""The settings live workers on one queue share (``<queue>:settings``), so that each can say
when another's differs: a rolling change, or a mistake."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from trio_worker.queue.redis_queue import RedisQueue


async def share_settings(
    queue: RedisQueue, settings: Mapping[str, object]
) -> dict[str, dict[str, Any]]:
    """Record this worker's ``settings`` (a field of ``<queue>:settings``) and return those of
    every live worker, ours included. The fields of workers whose heartbeat is gone are removed
    on the way (ours goes with our heartbeat on a clean stop: ``scripts.UNBEAT``)."""
    boundary, key = queue.boundary, queue.keys.settings
    client: Any = boundary.client
    await boundary.call(client.hset, key, queue.worker_id, orjson.dumps(settings))
    found: dict[Any, Any] = await boundary.call(client.hgetall, key)
    fields = {_text(k): v for k, v in found.items()}
    alive = await queue.alive(sorted(fields))
    gone = [worker for worker, up in alive.items() if not up]
    if gone:
        await boundary.call(client.hdel, key, *gone)
    shared: dict[str, dict[str, Any]] = {}
    for worker, value in fields.items():
        try:
            doc = orjson.loads(value)
        except orjson.JSONDecodeError:
            continue  # not ours to read: skipped, never fatal
        if alive.get(worker) and isinstance(doc, dict):
            shared[worker] = doc
    return shared


def _text(value: str | bytes) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
