"""The Redis side: the vote list, in-flight lists, heartbeats and dead letters.

- ``scripts``: every Lua script, with its KEYS/ARGV and why it is atomic;
- ``keys``: the key names, all under ``<queue>:``;
- ``boundary``: every redis-py call, its errors mapped to ``RedisUnavailable``;
- ``client``: opening the redis-py client;
- ``redis_queue``: the worker's operations; ``admin``: the operator commands' extra ones.
"""

from trio_worker.queue.admin import QueueAdmin
from trio_worker.queue.boundary import Boundary
from trio_worker.queue.client import connect
from trio_worker.queue.keys import Keys
from trio_worker.queue.redis_queue import (
    BATCH_BYTES,
    PREVIEW_BYTES,
    TAKE_CHUNK,
    Item,
    LeaseLost,
    LostOwnership,
    RedisQueue,
    Taken,
    TooLarge,
)

__all__ = [
    "BATCH_BYTES",
    "PREVIEW_BYTES",
    "TAKE_CHUNK",
    "Boundary",
    "Item",
    "Keys",
    "LeaseLost",
    "LostOwnership",
    "QueueAdmin",
    "RedisQueue",
    "Taken",
    "TooLarge",
    "connect",
]
