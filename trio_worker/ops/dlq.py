"""``trio-worker dlq``: list, requeue and purge dead letters.

Letters are handled a chunk at a time from the oldest, each chunk in one atomic script that
acts only if the letters are still exactly those read (queue.admin.SETTLE_DEAD): two operators, or a
requeue and a purge, never move or delete a letter twice. ``stale_batch`` letters stay where
they are unless asked for by reason, by a requeue and by a purge alike: their votes may already
be stored, or may be stored nowhere else.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson

from trio_worker.config import Config
from trio_worker.messages import STALE_BATCH, Original
from trio_worker.ops.stores import open_queue, producer_push
from trio_worker.queue import QueueAdmin
from trio_worker.queue.admin import Action

CHUNK = 500
# The reason counted for a letter that is not an envelope this worker wrote.
UNREADABLE = "unreadable"


class UnreadableEnvelope(ValueError):
    """A dead letter that is not an envelope this worker wrote; nothing was moved."""


@dataclass
class Requeued:
    moved: int = 0
    left_stale: int = 0  # stale_batch letters left in place (not asked for by reason)
    by_reason: Counter[str] = field(default_factory=Counter)  # what moved (or would)


@dataclass
class Purged:
    removed: Counter[str] = field(default_factory=Counter)
    kept: Counter[str] = field(default_factory=Counter)


@dataclass
class Listing:
    letters: list[dict[str, Any]]  # the envelopes shown, oldest first
    total: int  # letters in the list when it was read


def purged_by(letter_reason: str, asked: str | None) -> bool:
    """Whether ``dlq purge [--reason asked]`` deletes a letter of ``letter_reason``: of the
    reason asked for; without one, every letter but ``stale_batch`` (which may hold the only
    copy of a valid vote) and unreadable ones included."""
    if asked is not None:
        return letter_reason == asked
    return letter_reason != STALE_BATCH


def reason_of(letter: bytes) -> str:
    """A letter's reason, or ``UNREADABLE`` for one that is not an envelope."""
    try:
        doc = orjson.loads(letter)
    except orjson.JSONDecodeError:
        return UNREADABLE
    reason = doc.get("reason") if isinstance(doc, dict) else None
    return reason if isinstance(reason, str) and reason else UNREADABLE


async def dlq_list(config: Config, limit: int | None, reason: str | None = None) -> Listing:
    """The oldest ``limit`` letters (every one for None; of ``reason``, if given), as their
    JSON documents."""
    out: list[dict[str, Any]] = []
    start = 0
    async with open_queue(config) as queue:
        total = await queue.dead_count()
        while limit is None or len(out) < limit:
            want = CHUNK if reason or limit is None else min(CHUNK, limit - len(out))
            chunk = await queue.dead_letters(start, want)
            if not chunk:
                break
            start += len(chunk)
            for raw in chunk:
                try:
                    doc = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    doc = None
                if not isinstance(doc, dict):
                    doc = {"unreadable_envelope": raw.decode("utf-8", "replace")}
                if reason is None or doc.get("reason") == reason:
                    out.append(doc)
                    if len(out) == limit:
                        break
    return Listing(out, total)


async def dlq_requeue(
    config: Config, limit: int | None, reason: str | None = None, *, dry_run: bool = False
) -> Requeued:
    """Move dead letters (oldest first) back to the queue, atomically and once each.

    ``limit=None`` moves the letters there are now, not ones that arrive meanwhile: a message
    that is still invalid comes back to the dead-letter list, and must not be requeued again in
    a loop. With ``reason``, only letters of that reason move; without, all but ``stale_batch``.
    ``dry_run`` moves nothing and says what would move.
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
            moving: Counter[str] = Counter()
            stale = 0
            for position, letter in enumerate(seen):
                found = _original(letter, offset + position, queue)
                wanted = found.reason == reason if reason else found.reason != STALE_BATCH
                if not wanted or (limit is not None and done.moved + moving.total() >= limit):
                    actions.append(("keep", ""))
                    stale += found.reason == STALE_BATCH and not reason
                    continue
                moving[found.reason] += 1
                if found.key is not None:
                    originals.append(found.key)
                    actions.append(("move", 2 + len(originals)))
                else:
                    actions.append(("push", found.raw))
            if dry_run:
                moving_now = 0  # nothing moves: every letter stays where it is
            elif await queue.settle_dead(push, offset, seen, actions, originals):
                moving_now = moving.total()
            else:
                continue  # changed under us (another operator, a purge): read it again
            done.moved += moving.total()
            done.by_reason += moving
            done.left_stale += stale
            offset += len(seen) - moving_now
            todo -= len(seen)
    return done


async def dlq_purge(config: Config, reason: str | None = None) -> Purged:
    """Delete the dead letters there are now that ``purged_by(reason)`` selects (and the
    originals of ``too_large`` ones); the others stay where they are, in order."""
    done = Purged()
    async with open_queue(config) as queue:
        todo = await queue.dead_count()
        offset = 0  # letters kept in place before the part not yet looked at
        while todo > 0:
            seen = await queue.dead_letters(offset, min(CHUNK, todo))
            if not seen:
                break
            actions: list[Action] = []
            originals: list[str] = []
            removed: Counter[str] = Counter()
            kept: Counter[str] = Counter()
            for letter in seen:
                letter_reason = reason_of(letter)
                if not purged_by(letter_reason, reason):
                    actions.append(("keep", ""))
                    kept[letter_reason] += 1
                    continue
                removed[letter_reason] += 1
                key = _original_key(letter, queue)
                if key is not None:
                    originals.append(key)
                actions.append(("drop", 2 + len(originals) if key is not None else 0))
            if not await queue.settle_dead("LPUSH", offset, seen, actions, originals):
                continue  # changed under us (another operator, a requeue): read it again
            done.removed += removed
            done.kept += kept
            offset += kept.total()
            todo -= len(seen)
    return done


async def dead_letter_reasons(config: Config) -> Counter[str]:
    """How many letters the list holds now, by reason (``UNREADABLE`` for non-envelopes)."""
    counts: Counter[str] = Counter()
    async with open_queue(config) as queue:
        todo = await queue.dead_count()
        start = 0
        while start < todo:
            chunk = await queue.dead_letters(start, min(CHUNK, todo - start))
            if not chunk:
                break
            start += len(chunk)
            counts.update(reason_of(letter) for letter in chunk)
    return counts


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
