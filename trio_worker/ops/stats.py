"""``trio-worker stats``: queue depth, votes in flight, dead letters, stored totals."""

from __future__ import annotations

from typing import Any

from trio_worker.config import Config
from trio_worker.mysql.schema import totals
from trio_worker.ops.stores import open_mysql, open_queue


async def stats(config: Config) -> dict[str, Any]:
    async with open_queue(config) as queue:
        depth = await queue.depth()
        inflight = await queue.inflight_count()
        dead = await queue.dead_count()
        keys = queue.keys
        workers = sorted(
            {parts[0] for k in await queue.registered() if (parts := keys.split_inflight(k))}
        )
        alive = await queue.alive(workers)
        async with open_mysql(config) as conn:
            stored = await totals(conn, config.mysql_database)
    return {
        "queue": config.vote_queue,
        "queue_depth": depth,
        "in_flight": inflight,
        "workers_with_in_flight": workers,
        "workers_with_in_flight_dead": [w for w in workers if not alive[w]],
        "dead_letter_queue": config.dead_letter_queue,
        "dead_letters": dead,
        "database": config.mysql_database,
        "database_exists": stored is not None,
        "stored_by_vote": stored or {},
        "stored_total": sum((stored or {}).values()),
    }
