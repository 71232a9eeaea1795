"""``trio-worker produce``: push well-formed test votes, as a producer would."""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import orjson
import trio

from trio_worker.config import Config
from trio_worker.ops.stores import open_queue, producer_push

DEFAULT_CHOICES = ("a", "b")


async def produce(
    config: Config,
    count: int,
    choices: list[str],
    rate: float | None,
    progress: Callable[[int], None],
) -> int:
    """Push ``count`` well-formed votes with unique voter ids, at most ``rate`` per second;
    ``progress(n)`` after each push of ``n``."""
    chunk = 1000 if rate is None else max(1, min(1000, math.ceil(rate / 20)))
    run_id = uuid.uuid4().hex[:8]
    rng = random.Random()
    push = producer_push(config)
    async with open_queue(config) as queue:
        start = trio.current_time()
        sent = 0
        while sent < count:
            n = min(chunk, count - sent)
            now = datetime.now(UTC).isoformat()
            messages = [
                orjson.dumps(
                    {
                        "voter_id": f"{run_id}-{sent + i}",
                        "vote": rng.choice(choices),
                        "timestamp": now,
                    }
                )
                for i in range(n)
            ]
            await queue.push(push, messages)
            sent += n
            progress(n)
            if rate is not None:
                await trio.sleep_until(start + sent / rate)
    return sent
