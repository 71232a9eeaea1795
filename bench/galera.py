"""``just bench --galera``: the drain on a MariaDB Galera Cluster, beside the cluster's ceiling.

Starts the tests' private cluster (``tests.support.galera``: three nodes on this machine, rsync
state transfers, the shipped HAProxy configuration and health check, on free loopback ports) and
points the bench's MySQL at HAProxy; Redis stays the local one. Then, as the main bench does:
the ceiling, a drain, the ceiling again, ... (``bench.drain.drains_between_ceilings``), every
connection through HAProxy to the node that takes the writes, whose commits wait for the other
two to receive the write-set. The ratio drain / ceiling says what the worker costs on top of
what certification costs any client. The MariaDB CPU per vote is the writing node's; the drains'
cores busy show every node and HAProxy apart, and ``others`` what else ran."""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.baselines import CEILING_ROWS_PER_STATEMENT, ceiling
from bench.common import RESULTS, say
from bench.drain import drains_between_ceilings
from bench.report import (
    DRAIN_VS_CEILING,
    drains_workers_line,
    every_run,
    load_avg,
    machine,
    summarise_drains,
)
from bench.stores import Stores, server_versions
from tests.support.galera import Galera, galera_cluster, missing


def node_settings(cluster: Galera) -> dict[str, str]:
    """What the nodes run with that bears on the rate (read from the writing node)."""
    with cluster.nodes[0].admin() as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT @@innodb_flush_log_at_trx_commit, @@wsrep_slave_threads, @@wsrep_sync_wait,"
            " @@binlog_format"
        )
        row = cur.fetchone()
        cur.execute("SHOW GLOBAL STATUS LIKE 'wsrep_provider_version'")
        provider = cur.fetchone()
    assert row is not None
    assert provider is not None
    names = ["innodb_flush_log_at_trx_commit", "wsrep_slave_threads", "wsrep_sync_wait"]
    names.append("binlog_format")
    return {
        "provider": str(provider[1]),
        **{name: str(value) for name, value in zip(names, row, strict=True)},
    }


def table(res: dict[str, Any]) -> str:
    m, drains, summary = res["machine"], res["drains"], res["drain_summary"]
    c1k = res["ceiling_1000"]
    size = res["settings"]["batch_size"]
    settings = "default settings" if size is None else f"BATCH_SIZE={size}"
    lines = [
        f"machine: {m['cpu']}, {m['cores']} cores; load avg {load_avg(m['load_avg_before'])} "
        f"before, {load_avg(m['load_avg_after'])} after",
        f"cluster: {len(res['nodes'])} MariaDB Galera nodes on this machine behind HAProxy "
        f"(deploy/galera); {res['servers']['mariadb']}, provider {res['galera']['provider']}",
        "",
        f"{'cluster, 1,000-row INSERTs, votes/s':<44}{c1k['votes_per_s']:>12,.0f}   "
        f"{c1k['votes_per_s'] / res['ceilings'][0]['votes_per_s']:.2f} x the ceiling after it",
        "",
        f"drains of {drains[0]['votes']:,} votes through HAProxy, {settings}, each between two",
        f"ceilings (the cluster alone: {CEILING_ROWS_PER_STATEMENT:,}-row INSERTs, one "
        "connection, through HAProxy):",
        "(writer: the node taking the writes; others: cores busy with every process that is",
        "not the worker, Redis, a node or HAProxy, this bench's watching excluded):",
        f"{'run':>4}{'ceiling':>10}{'drain':>10}{'ceiling':>10}{'drain /':>9}{'worker':>9}"
        f"{'writer':>9}{'others':>8}",
        f"{'':>4}{'before':>10}{'votes/s':>10}{'after':>10}{'ceiling':>9}{'us/vote':>9}"
        f"{'us/vote':>9}{'cores':>8}",
    ]
    for k, d in enumerate(drains, 1):
        lines.append(
            f"{k:>4}{d['ceiling_before']:>10,.0f}{d['votes_per_s']:>10,.0f}"
            f"{d['ceiling_after']:>10,.0f}{d['vs_ceiling']:>9.2f}"
            f"{d['worker_cpu_us_per_vote']:>9.2f}{d['mariadb_cpu_us_per_vote']:>9.2f}"
            f"{d['others_cores_busy']:>8.2f}"
        )
    r = summary["vs_ceiling"]
    cores = " ".join(f"{k} {v}" for k, v in drains[0]["cpu_cores_busy"].items())
    lines += [
        f"  drain / ceiling        min {r['min']:.2f}  median {r['median']:.2f}  max {r['max']:.2f}"
        f"   >= {DRAIN_VS_CEILING:.2f} in every run: {res['targets']['drain_vs_ceiling']}",
        f"  CPU cores busy         {cores} (run 1)",
    ]
    lines += ["", drains_workers_line(drains)]
    return "\n".join(lines)


def run(args: Any) -> int:
    """The Galera stages of ``just bench --galera``; writes bench/results/galera.json."""
    lacking = missing()
    if lacking:
        raise SystemExit(f"--galera needs {', '.join(lacking)} (Debian: galera-4 haproxy rsync)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    output = args.output
    if output is None:  # not given: the main run's file is left alone
        suffix = "" if args.batch_size is None else f"-batch{args.batch_size}"
        output = RESULTS / f"galera{suffix}.json"
    started = time.monotonic()
    res: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", ""),
        "machine": machine(),
        "settings": {"count": args.count, "repeats": args.repeats, "batch_size": args.batch_size},
    }
    with tempfile.TemporaryDirectory(prefix="tw-bench-galera-") as tmp:
        say("galera: starting three nodes and HAProxy (deploy/galera)")
        with galera_cluster(Path(tmp)) as cluster:
            stores = replace(
                Stores.from_env(),
                mysql_host="127.0.0.1",
                mysql_port=cluster.port,
                mysql_user="root",
                mysql_password="",
                mysql_server_ports=tuple(n.port for n in cluster.nodes),
            )
            res["nodes"] = [n.name for n in cluster.nodes]
            res["servers"] = server_versions(stores)
            res["galera"] = node_settings(cluster)
            say(f"the cluster at the default batch: {args.count:,} rows as 1,000-row INSERTs")
            res["ceiling_1000"] = ceiling(stores, args.count, 1000)
            say(f"  {res['ceiling_1000']['votes_per_s']:,.0f} votes/s")
            runs: list[dict[str, str]] = [{}] * args.repeats
            res.update(drains_between_ceilings(stores, args.count, runs, args.batch_size))
            assert cluster.routed_to() is cluster.nodes[0], "HAProxy moved off the first node"
    res["drain_summary"] = summarise_drains(res["drains"])
    res["machine"]["load_avg_after"] = list(os.getloadavg())
    res["wall_seconds"] = time.monotonic() - started
    res["targets"] = {
        "drain_vs_ceiling": every_run([d["vs_ceiling"] >= DRAIN_VS_CEILING for d in res["drains"]])
    }
    output.write_text(json.dumps(res, indent=2) + "\n")
    print(table(res))
    print(f"\nwall time {res['wall_seconds']:.0f} s; wrote {output}")
    return 0
