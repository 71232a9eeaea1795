"""What the pipeline's tasks share, built once by ``service.run``."""

from __future__ import annotations

from dataclasses import dataclass

from trio_worker.config import Config
from trio_worker.liveness import Liveness
from trio_worker.metrics import Metrics
from trio_worker.pipeline.holdings import Holdings
from trio_worker.status import Status


@dataclass(frozen=True)
class Shared:
    config: Config
    status: Status
    metrics: Metrics
    holdings: Holdings
    live: Liveness


class Task:
    """A pipeline task: what every task reads from ``Shared``, as attributes."""

    def __init__(self, shared: Shared) -> None:
        self.config = shared.config
        self.status = shared.status
        self.metrics = shared.metrics
        self.holdings = shared.holdings
        self.live = shared.live
