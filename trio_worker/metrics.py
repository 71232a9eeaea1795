"""Prometheus metrics, one registry per service instance (tests stay independent)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from trio_worker.messages import REASONS
from trio_worker.version import version

# Past this many distinct votes, further values are counted under OTHER_VOTE: a flood of made-up
# votes must not create an unbounded number of series.
MAX_VOTE_LABELS = 32
OTHER_VOTE = "__other__"


class OldestVote(Collector):
    """``vote_queue_oldest_age_seconds``: how long the oldest waiting vote has waited, from its
    ``timestamp`` (sampled with the queue depth, aged at each scrape); absent when it has none."""

    NAME = "vote_queue_oldest_age_seconds"
    HELP = "Age of the oldest waiting vote, from its timestamp (absent when it has none)"

    def __init__(self) -> None:
        self.cast_at: datetime | None = None  # naive UTC

    def describe(self) -> list[Metric]:
        return [GaugeMetricFamily(self.NAME, self.HELP)]

    def collect(self) -> Iterator[Metric]:
        if self.cast_at is not None:
            now = datetime.now(UTC).replace(tzinfo=None)
            age = max(0.0, (now - self.cast_at).total_seconds())
            yield GaugeMetricFamily(self.NAME, self.HELP, value=age)


class Metrics:
    """The seed's five metrics under their names, plus the batch pipeline's own, the worker's
    version and its stores' state, and the standard ``process_*`` and ``python_info``."""

    def __init__(self, choices: frozenset[str] | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        # What the default registry would have: memory, CPU, open files (Linux), the Python.
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        self.build_info = Gauge(
            "trio_worker_build_info",
            "The running worker's version (always 1)",
            ["version"],
            registry=r,
        )
        self.build_info.labels(version()).set(1)
        self.store_up = Gauge(
            "trio_worker_store_up",
            "1 while the store answers the worker, 0 from a failure until it answers again",
            ["store"],
            registry=r,
        )
        self.votes_processed = Counter(
            "votes_processed", "Votes stored in MySQL, by vote", ["vote"], registry=r
        )
        self.redis_errors = Counter(
            "redis_errors", "Redis connection or command errors", registry=r
        )
        self.database_errors = Counter(
            "database_errors", "MySQL connection or statement errors", registry=r
        )
        self.health_checks = Counter(
            "health_checks", "Health checks, by status", ["status"], registry=r
        )
        self.vote_process_duration = Histogram(
            "vote_process_duration_seconds",
            "Time from taking a batch off the queue to its commit (per batch)",
            registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.queue_depth = Gauge("vote_queue_depth", "Votes waiting in the Redis list", registry=r)
        self.inflight = Gauge(
            "votes_in_flight", "Votes held by this worker, taken but not yet committed", registry=r
        )
        self.batch_size = Histogram(
            "vote_batch_size",
            "Votes per committed batch",
            registry=r,
            buckets=(1, 5, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000),
        )
        self.dead_letters = Counter(
            "dead_letters", "Invalid messages dead-lettered, by reason", ["reason"], registry=r
        )
        self.commit_duration = Histogram(
            "mysql_commit_duration_seconds",
            "Time of one batch's MySQL transaction",
            registry=r,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        self.batches_recovered = Counter(
            "vote_batches_recovered",
            "In-flight batches taken over from stopped workers",
            registry=r,
        )
        self.ready = Gauge("worker_ready", "1 while the worker is taking work", registry=r)
        self.oldest_vote = OldestVote()
        r.register(self.oldest_vote)
        self.worker_id_conflict = Gauge(
            "worker_id_conflict",
            "1 while another live process holds this process's WORKER_ID (it takes no votes)",
            registry=r,
        )
        for reason in REASONS:
            self.dead_letters.labels(reason)
        self._choices = choices
        self._vote_labels: set[str] = set(choices or ())
        for vote in self._vote_labels:
            self.votes_processed.labels(vote)

    def vote_label(self, vote: str) -> str:
        """The label a vote is counted under: itself while the label set is small."""
        if vote in self._vote_labels:
            return vote
        if self._choices is None and len(self._vote_labels) < MAX_VOTE_LABELS:
            self._vote_labels.add(vote)
            return vote
        return OTHER_VOTE

    def count_votes(self, counts: dict[str, int]) -> None:
        for vote, n in counts.items():
            self.votes_processed.labels(self.vote_label(vote)).inc(n)

    def render(self) -> bytes:
        return generate_latest(self.registry)
