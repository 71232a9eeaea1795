"""``trio-worker dlq``: list, requeue and purge dead letters.

Letters are handled a chunk at a time from the oldest, each chunk in one atomic script that
acts only if the letters are still exactly those read (scripts.SETTLE_DEAD): two operators, or a
requeue and a purge, never move or delete a letter twice. ``stale_batch`` letters stay where
they are unless asked for by reason: their votes may already be stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from trio_worker.config import Config
from trio_worker.messages import STALE_BATCH, Original
from trio_worker.ops.stores import open_queue, producer_push
from trio_worker.queue import QueueAdmin
from trio_worker.queue.admin import Action

CHUNK = 500


class UnreadableEnvelope(ValueError):
    """A dead letter that is not an envelope this worker wrote; nothing was moved."""


@dataclass
class Requeued:
    moved: int = 0
    left_stale: int = 0  # stale_batch letters left in place (not asked for by reason)


async def dlq_list(config: Config, limit: int, reason: str | None = None) -> list[dict[str, Any]]:
    """The oldest ``limit`` letters (of ``reason``, if given), as their JSON documents."""
    out: list[dict[str, Any]] = []
    start = 0
    async with open_queue(config) as queue:
        while len(out) < limit:
            chunk = await queue.dead_letters(start, CHUNK if reason else limit - len(out))
            if not chunk:
                break
            start += len(chunk)
            for raw in chunk:
                try:
                    doc = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    doc = {"unreadable_envelope": raw.decode("utf-8", "replace")}
                if reason is None or doc.get("reason") == reason:
                    out.append(doc)
                    if len(out) == limit:
                        break
    return out


async def dlq_requeue(config: Config, limit: int | None, reason: str | None = None) -> Requeued:
    """Move dead letters (oldest first) back to the queue, atomically and once each.

    ``limit=None`` moves the letters there are now, not ones that arrive meanwhile: a message
    that is still invalid comes back to the dead-letter list, and must not be requeued again in
    a loop. With ``reason``, only letters of that reason move; without, all but ``stale_batch``.
    """
    done = Requeued()
    push = producer_push(config)
    async with open_queue(config) as queue:
        todo = await queue.dead_count()
        offset = 0  # letters kept in place before the part not yet looked at
        while todo > 0 and (limit is None or done.moved < limit):
            seen = await queue.dead_letters(offset, min(CHUNK, todo))
            if not seen:
                break
            actions: list[Action] = []
            originals: list[str] = []
            moving = stale = 0
            for position, letter in enumerate(seen):
                found = _original(letter, offset + position, queue)
                wanted = found.reason == reason if reason else found.reason != STALE_BATCH
                if not wanted or (limit is not None and done.moved + moving >= limit):
                    actions.append(("keep", ""))
                    stale += found.reason == STALE_BATCH and not reason
                elif found.key is not None:
                    originals.append(found.key)
                    actions.append(("move", 2 + len(originals)))
                    moving += 1
                else:
                    actions.append(("push", found.raw))
                    moving += 1
            if not await queue.settle_dead(push, offset, seen, actions, originals):
                continue  # changed under us (another operator, a purge): read it again
            done.moved += moving
            done.left_stale += stale
            offset += len(seen) - moving
            todo -= len(seen)
    return done


async def dlq_purge(config: Config) -> int:
    """Delete the dead letters there are now (and the originals of ``too_large`` ones)."""
    purged = 0
    async with open_queue(config) as queue:
        todo = await queue.dead_count()
        while todo > 0:
            seen = await queue.dead_letters(0, min(CHUNK, todo))
            if not seen:
                break
            actions: list[Action] = []
            originals: list[str] = []
            for letter in seen:
                key = _original_key(letter, queue)
                if key is not None:
                    originals.append(key)
                actions.append(("drop", 2 + len(originals) if key is not None else 0))
            if await queue.settle_dead("LPUSH", 0, seen, actions, originals):
                purged += len(seen)
                todo -= len(seen)
    return purged


async def dead_letter_count(config: Config) -> int:
    async with open_queue(config) as queue:
        return await queue.dead_count()


def _original(letter: bytes, position: int, queue: QueueAdmin) -> Original:
    try:
        found = Original(letter)
        # Only a list the worker made for an oversized message: a letter naming any other key
        # (an in-flight list, say) must never have it moved to the queue.
        if found.key is not None and not queue.keys.is_large(found.key):
            raise ValueError(f"original_key {found.key!r} is not an oversized message's list")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UnreadableEnvelope(
            f"dead letter {position + 1} in {queue.keys.dead} is not a readable envelope"
            f" ({exc}); inspect it with `trio-worker dlq list`"
        ) from exc
    return found


def _original_key(letter: bytes, queue: QueueAdmin) -> str | None:
    try:
        key = orjson.loads(letter).get("original_key")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return key if isinstance(key, str) and queue.keys.is_large(key) else None
