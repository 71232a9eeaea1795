"""The tasks that move votes, each start-able on its own with its dependencies passed in.

- ``heartbeat``: the lease on our worker id (``Lease``), and the queue's depth for the metrics;
- ``pruner``: the ledger's rows older than the retention;
- ``consumer``: Redis → parsed batch → channel, when a flusher is free (``permits``);
- ``recovery``: batches of stopped workers, and our own lists no batch holds;
- ``flusher``: channel → MySQL (ledger + rows, one transaction) → finish in Redis;
- ``holdings``: which in-flight lists this process stands for, and which the next take drops;
- ``batch``: a batch's votes, parsed once;
- ``shared``: what every task reads (configuration, status, metrics, holdings, liveness).
"""

from trio_worker.pipeline.consumer import BLOCK_S, Consumer
from trio_worker.pipeline.flusher import FLUSHERS, Flushers
from trio_worker.pipeline.holdings import Holdings
from trio_worker.pipeline.permits import Permits
from trio_worker.pipeline.recovery import Recovery

__all__ = ["BLOCK_S", "FLUSHERS", "Consumer", "Flushers", "Holdings", "Permits", "Recovery"]
