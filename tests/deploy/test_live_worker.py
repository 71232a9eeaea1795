"""Every metric the dashboard and the alerts use, and every probe path the manifests use,
against a live worker (the local Redis and MariaDB).
"""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import redis
import trio
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.deploy.common import (
    alert_rules,
    dashboard_exprs,
    dockerfile_stages,
    manifests,
    metric_names,
)
from tests.support.http import wait_ready
from tests.support.stores import mysql_connect, push_raw, push_votes, row_count
from tests.support.waiting import wait_until
from trio_worker.config import Config

# Series Prometheus makes itself, not the worker.
PROMETHEUS_SERIES = {"up"}


def test_metric_names_reads_promql() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (job, le) (rate(a_seconds_bucket{x="y"}[5m]))) > 0.5'
        " and on (job) max(b_total offset 5m) / ignoring(le) c:rate5m unless absent(up == 1)"
    )
    assert metric_names(expr) == {"a_seconds_bucket", "b_total", "c:rate5m", "up"}


# What these deploy files need from the worker that it gained alongside them. On a worker without
# them the live tests below fail naming exactly these; they are listed to say so, not to excuse.
NEW_IN_WORKER = {
    "metrics": {"vote_queue_oldest_age_seconds", "worker_id_conflict"},
    "dead-letter reasons": {"too_large", "stale_batch"},
    "endpoints": {"/live"},
}
_REASON_MATCHER = re.compile(r'\breason\s*(?:=~|!~|!=|=)\s*"([^"]*)"')


def scraped(text: str) -> list[Sample]:
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def value_of(samples: list[Sample], name: str) -> float | None:
    found = [s.value for s in samples if s.name == name]
    return found[0] if found else None


async def test_every_metric_in_dashboard_and_alerts_is_exported_by_a_live_worker(
    config: Config, rds: redis.Redis, start_worker: Any
) -> None:
    push_votes(rds, config, 2)
    push_raw(rds, config, b"{not json")
    # One vote per batch: when MySQL stalls (below) the flushers hold a few votes, the rest wait.
    worker = await start_worker(config, batch_size=1)
    await wait_until(lambda: row_count(config) == 2, what="2 rows")
    await wait_until(lambda: rds.llen(config.dead_letter_queue) == 1, what="1 dead letter")

    # vote_queue_oldest_age_seconds exists only while a vote with a `timestamp` waits, and an
    # idle worker takes a vote within milliseconds. So the votes table is locked (the flushers
    # block on their INSERT) and timestamped votes are pushed behind it; the scrape is taken
    # while they wait, then the lock is released and they are stored.
    sent_at = time.time() - 60
    lock = mysql_connect(config, autocommit=False)
    try:
        with lock.cursor() as cursor:
            cursor.execute("LOCK TABLES votes WRITE")
        push_votes(rds, config, 50, prefix="w", timestamp=sent_at)
        async with httpx.AsyncClient(timeout=10) as client:
            await client.get(worker.url + "/health")  # so health_checks_total has a series
            samples: list[Sample] = []
            with trio.move_on_after(10):  # the gauges are sampled every second or so
                # Polling: the gauge changes inside the worker, which offers no event to wait on.
                while value_of(samples, "vote_queue_oldest_age_seconds") is None:
                    await trio.sleep(0.2)
                    samples = scraped((await client.get(worker.url + "/metrics")).text)
    finally:
        lock.close()  # ends the session, which releases the table lock
    await wait_until(lambda: row_count(config) == 52, what="52 rows after the lock")

    assert (value_of(samples, "vote_queue_depth") or 0) > 0, "no vote was waiting at the scrape"
    exported = {sample.name for sample in samples}
    used_by_dashboard = {name for expr in dashboard_exprs() for name in metric_names(expr)}
    used_by_alerts = {name for rule in alert_rules() for name in metric_names(rule["expr"])}
    missing = (used_by_dashboard | used_by_alerts) - exported - PROMETHEUS_SERIES
    # An alert on increase(dead_letters_total{reason=...}) only sees the first such message if
    # the series already existed at 0: the worker creates one per reason at start.
    reasons = {s.labels["reason"] for s in samples if s.name == "dead_letters_total"}
    selected = {
        reason
        for rule in alert_rules()
        for pattern in _REASON_MATCHER.findall(rule["expr"])
        for reason in pattern.split("|")
    }
    assert selected >= NEW_IN_WORKER["dead-letter reasons"]
    assert (missing, selected - reasons) == (set(), set()), (
        f"not exported: metrics {missing}, dead_letters_total reasons {selected - reasons}"
        f" (the worker adds {NEW_IN_WORKER} alongside these deploy files)"
    )
    # The oldest waiting vote's age comes from its own timestamp, a minute old.
    age = value_of(samples, "vote_queue_oldest_age_seconds")
    assert age is not None
    assert 55 <= age < 3600
    assert value_of(samples, "worker_id_conflict") == 0  # the only process with its WORKER_ID

    # The dashboard shows what issue 5 asks for: throughput by choice, queue depth, in flight,
    # batch sizes, commit latency, errors and dead letters; and the oldest waiting vote.
    assert used_by_dashboard >= {
        "votes_processed_total",
        "vote_queue_depth",
        "vote_queue_oldest_age_seconds",
        "votes_in_flight",
        "vote_batch_size_bucket",
        "mysql_commit_duration_seconds_bucket",
        "redis_errors_total",
        "database_errors_total",
        "dead_letters_total",
    }
    assert any("by (vote)" in expr for expr in dashboard_exprs())


def probe_paths() -> set[str]:
    """Every HTTP path the Deployment's probes and the image's HEALTHCHECK ask for."""
    (container,) = manifests()["Deployment"]["spec"]["template"]["spec"]["containers"]
    probes = ("livenessProbe", "readinessProbe", "startupProbe")
    paths = {container[probe]["httpGet"]["path"] for probe in probes if probe in container}
    healthcheck = dict(dockerfile_stages()[-1])["HEALTHCHECK"]
    paths |= set(re.findall(r"http://127\.0\.0\.1:%s(/\w+)", healthcheck))
    return paths


async def test_a_live_worker_answers_every_probe_the_manifests_use(
    config: Config, start_worker: Any
) -> None:
    paths = probe_paths()
    assert paths >= NEW_IN_WORKER["endpoints"] | {"/ready"}
    worker = await start_worker(config)
    await wait_ready(worker.url)
    async with httpx.AsyncClient(timeout=10) as client:
        answers = {path: (await client.get(worker.url + path)).status_code for path in paths}
    assert answers == dict.fromkeys(paths, 200)
