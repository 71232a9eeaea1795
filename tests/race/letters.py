"""Reading dead-letter envelopes, independently of the worker's code."""

from __future__ import annotations

import base64
import json
from collections.abc import Collection
from typing import Any

from tests.race.payloads import digest
from tests.race.settings import MAX_MESSAGE_BYTES


def decode(doc: dict[str, Any]) -> bytes:
    """The bytes an envelope's ``message`` stands for, per its ``encoding``."""
    if doc.get("encoding") == "base64":
        return base64.b64decode(doc["message"])
    return str(doc["message"]).encode("utf-8")


def voter_of(message: bytes) -> str | None:
    """The voter id of a message that has one."""
    try:
        doc = json.loads(message)
    except ValueError:
        return None
    voter = doc.get("voter_id") if isinstance(doc, dict) else None
    return voter if isinstance(voter, str) else None


def too_large_problem(
    doc: dict[str, Any],
    preview: bytes,
    held: list[bytes],
    prefix: str,
    pushed: Collection[bytes],
    seen_keys: Collection[str],
) -> str | None:
    """What is wrong with a ``too_large`` letter whose ``original_key`` holds ``held``, if
    anything: the contract's envelope, and the original kept byte for byte, alone in its list,
    under the queue's prefix. ``pushed``: the digests of the oversized messages pushed."""
    key = doc.get("original_key")
    original = held[0] if len(held) == 1 else b""
    checks = [
        (isinstance(key, str) and key.startswith(prefix), "original_key not under the prefix"),
        (len(held) == 1, f"its original_key holds {len(held)} elements, not 1"),
        (key not in seen_keys, "its original_key is another letter's too"),
        (digest(original) in pushed, "its original was never pushed"),
        (doc.get("size") == len(original), f"size {doc.get('size')} for {len(original)} bytes"),
        (doc.get("truncated") is True, "not marked truncated"),
        (0 < len(preview) <= MAX_MESSAGE_BYTES, f"a preview of {len(preview)} bytes"),
        (original.startswith(preview), "a preview that is not the original's first bytes"),
    ]
    return next((why for ok, why in checks if not ok), None)
