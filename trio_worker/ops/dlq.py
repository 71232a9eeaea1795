"""``trio-worker dlq``: list, requeue and purge dead letters."""

from __future__ import annotations

from typing import Any

import orjson

from trio_worker.config import Config
from trio_worker.messages import original
from trio_worker.ops.stores import open_queue, producer_push

REQUEUE_CHUNK = 500


class UnreadableEnvelope(ValueError):
    """A dead letter that is not an envelope this worker wrote; nothing was moved."""


async def dlq_list(config: Config, limit: int) -> list[dict[str, Any]]:
    async with open_queue(config) as queue:
        items = await queue.dead_head(limit)
    out = []
    for raw in items:
        try:
            out.append(orjson.loads(raw))
        except orjson.JSONDecodeError:
            out.append({"unreadable_envelope": raw.decode("utf-8", "replace")})
    return out


async def dlq_requeue(config: Config, limit: int | None) -> int:
    """Move dead letters (oldest first) back to the queue, atomically and once each.

    ``limit=None`` moves the dead letters there are now, not ones that arrive meanwhile: a
    message that is still invalid comes back to the dead-letter list, and must not be requeued
    again in a loop.
    """
    moved = 0
    push = producer_push(config)
    async with open_queue(config) as queue:
        if limit is None:
            limit = await queue.dead_count()
        while moved < limit:
            head = await queue.dead_head(min(REQUEUE_CHUNK, limit - moved))
            if not head:
                break
            try:
                originals = [original(e) for e in head]
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                raise UnreadableEnvelope(
                    f"dead letter {moved + 1} in {queue.keys.dead} is not a readable envelope"
                    f" ({exc}); inspect it with `trio-worker dlq list`"
                ) from exc
            # -1: the head changed under us (another operator, a purge); read it again.
            n = await queue.requeue_head(push, head, originals)
            if n > 0:
                moved += n
    return moved


async def dlq_purge(config: Config) -> int:
    """Delete the dead-letter list; return how many it held (counted in the same step)."""
    async with open_queue(config) as queue:
        return await queue.purge()


async def dead_letter_count(config: Config) -> int:
    async with open_queue(config) as queue:
        return await queue.dead_count()
