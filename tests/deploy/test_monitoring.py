"""The Prometheus Operator's objects (deploy/k8s/monitoring) and the alert rules they carry:
alerts.yml with promtool, and structurally in Python, so the check never vanishes.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from typing import Any

import jsonschema
import pytest
import yaml

from tests.deploy.common import (
    ALERTS,
    DEPLOY,
    JOB_MATCHER,
    K8S,
    MONITORING,
    alert_rules,
    kustomization_sources,
    kustomize,
    load_yaml,
    manifests,
    metric_names,
)
from tests.deploy.schemas import POD_MONITOR_SCHEMA, PROMETHEUS_RULE_SCHEMA, validate

ALERT_TESTS = DEPLOY / "prometheus" / "alerts.test.yml"


def monitoring_objects() -> dict[str, dict[str, Any]]:
    """deploy/k8s/monitoring's objects by kind."""
    found = {}
    for name in load_yaml(MONITORING / "kustomization.yaml")["resources"]:
        doc = load_yaml(MONITORING / name)
        found[doc["kind"]] = doc
    return found


def test_the_prometheus_rule_carries_exactly_the_groups_of_alerts_yml() -> None:
    """One source of truth: alerts.yml. `just rules` regenerates the PrometheusRule from it."""
    rule = monitoring_objects()["PrometheusRule"]
    jsonschema.validate(rule, PROMETHEUS_RULE_SCHEMA)
    assert rule["spec"]["groups"] == load_yaml(ALERTS)["groups"], (
        "deploy/k8s/monitoring/prometheusrule.yaml differs from alerts.yml: run `just rules`"
    )


def test_the_pod_monitor_scrapes_the_worker_pods_metrics_port() -> None:
    monitor = monitoring_objects()["PodMonitor"]
    jsonschema.validate(monitor, POD_MONITOR_SCHEMA)
    deployment = manifests()["Deployment"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    # No namespaceSelector: the workers' own namespace, where the monitor is applied.
    assert "namespaceSelector" not in monitor["spec"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    ports = {p["name"] for p in container["ports"]}
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] in ports
    assert endpoint["path"] == "/metrics"


def test_monitoring_builds_valid_operator_objects_that_kube_prometheus_stack_selects() -> None:
    built = kustomize(MONITORING)
    validate(built)
    assert sorted(doc["kind"] for doc in built) == ["ConfigMap", "PodMonitor", "PrometheusRule"]
    for doc in built:
        # kube-prometheus-stack's default selectors want the Helm release's name.
        assert doc["metadata"]["labels"]["release"]
    (rule,) = [doc for doc in built if doc["kind"] == "PrometheusRule"]
    assert rule["spec"]["groups"] == load_yaml(ALERTS)["groups"]


def test_deploy_k8s_applies_without_the_operator() -> None:
    """A cluster without the monitoring.coreos.com CRDs must still take `kubectl apply -k`."""
    sources = kustomization_sources(K8S)
    assert all(MONITORING not in path.parents for path in sources)
    for path in sources:
        if path.suffix not in (".yaml", ".yml"):
            continue  # a generator's env file
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            assert not str((doc or {}).get("apiVersion", "")).startswith("monitoring.coreos.com")


def test_deploy_k8s_builds_without_operator_objects() -> None:
    groups = {doc["apiVersion"].split("/")[0] for doc in kustomize(K8S)}
    assert "monitoring.coreos.com" not in groups


# --- alert rules -------------------------------------------------------------------------------

REQUIRED_ALERTS = {
    "VoteBacklogGrowing",
    "DeadLettersGrowing",
    "TrioWorkerDown",
    "TrioWorkerNoneUp",
    "TrioWorkerNotReady",
    "RedisErrors",
    "DatabaseErrors",
    "CommitLatencyHigh",
    # Votes waiting, nothing committed (or dead-lettered) for minutes.
    "TrioWorkerStalled",
    # The oldest waiting vote, by its own timestamp.
    "OldestVoteTooOld",
    # dead_letters_total{reason="stale_batch"} and {reason="too_large"}.
    "StaleBatchDeadLettered",
    "VoteMessagesTooLarge",
    # worker_id_conflict: two live processes with one WORKER_ID.
    "TrioWorkerIdConflict",
    # trio_worker_store_up == 0: what /health says, without anyone calling /health.
    "TrioWorkerStoreDown",
    # The process_* series: an OOM kill coming, descriptors leaking, a crash loop.
    "TrioWorkerMemoryHigh",
    "TrioWorkerFileDescriptorsHigh",
    "TrioWorkerRestarting",
    # trio_worker_build_info: a rollout stopped half-way.
    "TrioWorkerVersionsMixed",
}


def test_alert_rules_are_well_formed() -> None:
    """What promtool checks first, in Python: the check stays even where promtool is absent."""
    document = load_yaml(ALERTS)
    assert set(document) == {"groups"}
    names = []
    for group in document["groups"]:
        assert set(group) <= {"name", "interval", "rules", "limit"}
        assert isinstance(group["name"], str)
        assert group["rules"]
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}
            assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", rule["alert"])
            assert isinstance(rule["expr"], str)
            assert metric_names(rule["expr"])
            assert rule["expr"].count("(") == rule["expr"].count(")")
            if "for" in rule:
                assert re.fullmatch(r"\d+[smhd]", rule["for"]), rule["for"]
            assert rule["labels"]["severity"] in {"critical", "warning", "info"}
            assert rule["annotations"]["summary"]
            names.append(rule["alert"])
    assert len(names) == len(set(names))
    assert set(names) >= REQUIRED_ALERTS


def test_alerts_select_on_metric_names_not_on_a_job_name() -> None:
    """Compose, the Prometheus Operator and annotation scrapes each name the job differently."""
    assert JOB_MATCHER.search('up{job="trio-worker"}')
    for rule in alert_rules():
        assert not JOB_MATCHER.search(rule["expr"]), rule["alert"]


def test_every_alert_is_shown_firing_by_a_promtool_unit_test() -> None:
    fired = {
        case["alertname"]
        for test in load_yaml(ALERT_TESTS)["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert {rule["alert"] for rule in alert_rules()} - fired == set()


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing in CI: .ci/run installs Debian's prometheus package")
        pytest.skip(
            "promtool not installed (apt-get install prometheus); alerts.yml is still checked"
            " structurally by test_alert_rules_are_well_formed"
        )
    return found


@pytest.mark.parametrize(
    "args", [["check", "rules", "alerts.yml"], ["test", "rules", "alerts.test.yml"]]
)
def test_promtool_accepts_and_unit_tests_the_alert_rules(args: list[str]) -> None:
    result = subprocess.run(
        [promtool(), *args],
        cwd=ALERTS.parent,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr
