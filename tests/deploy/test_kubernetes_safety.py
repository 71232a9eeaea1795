"""deploy/k8s without traps: the base applies on any cluster (no KEDA or Prometheus Operator
kinds), the pods get no service links and an account of their own, a settings change rolls
them, the image and the labels name the package's version, a NetworkPolicy fences /metrics in,
the Grafana dashboard ships as a sidecar ConfigMap, and KEDA's maximum fits MySQL's default
connection limit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.common import (
    DASHBOARD,
    K8S,
    KEDA,
    MONITORING,
    ROOT,
    config_from,
    kustomize,
    load_yaml,
    manifests,
    worker_settings,
)
from tests.deploy.schemas import validate
from tests.deploy.test_keda import overlay
from trio_worker.pipeline import FLUSHERS
from trio_worker.version import version

# MySQL's and MariaDB's default max_connections, and what the sizing leaves to everything else
# (the front end, reports, backups, an exporter, an administrator).
MYSQL_DEFAULT_MAX_CONNECTIONS = 151
OTHER_CLIENTS = 30
# A worker's MySQL connections (docs/operations.md, "Sizing the fleet"; counted live by
# tests/test_fleet_sizing.py): the flushers', the pruner's and the /health probe's.
MYSQL_PER_WORKER = FLUSHERS + 2


def by_kind(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for doc in objects:
        assert doc["kind"] not in found, f"two {doc['kind']} objects"
        found[doc["kind"]] = doc
    return found


def test_the_base_applies_without_keda_or_the_prometheus_operator() -> None:
    built = kustomize(K8S)
    validate(built)
    groups = {doc["apiVersion"].split("/")[0] for doc in built}
    assert "keda.sh" not in groups
    assert "monitoring.coreos.com" not in groups
    assert sorted(doc["kind"] for doc in built) == [
        "ConfigMap",
        "Deployment",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "Service",
        "ServiceAccount",
    ]


def test_pods_get_no_service_links_and_an_account_of_their_own() -> None:
    objects = by_kind(kustomize(K8S))
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    assert pod["enableServiceLinks"] is False
    account = objects["ServiceAccount"]
    assert pod["serviceAccountName"] == account["metadata"]["name"] != "default"
    assert account["automountServiceAccountToken"] is False
    assert pod["automountServiceAccountToken"] is False


def built_with(tmp_path: Path, *literals: str) -> dict[str, dict[str, Any]]:
    tmp_path.mkdir()
    directory = overlay(tmp_path, [])
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    kustomization.pop("components")
    if literals:
        kustomization["configMapGenerator"] = [
            {"name": "trio-worker", "behavior": "merge", "literals": list(literals)}
        ]
    (directory / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    return by_kind(kustomize(directory))


def config_map_used(objects: dict[str, dict[str, Any]]) -> str:
    (container,) = objects["Deployment"]["spec"]["template"]["spec"]["containers"]
    (source,) = container["envFrom"]
    name: str = source["configMapRef"]["name"]
    return name


def test_a_settings_change_renames_the_config_map_and_so_rolls_the_pods(tmp_path: Path) -> None:
    before = built_with(tmp_path / "a")
    after = built_with(tmp_path / "b", "LOG_LEVEL=debug")
    for objects in (before, after):
        assert config_map_used(objects) == objects["ConfigMap"]["metadata"]["name"]
        assert config_map_used(objects).startswith("trio-worker-")
    assert config_map_used(before) != config_map_used(after)
    assert after["ConfigMap"]["data"]["LOG_LEVEL"] == "debug"
    assert before["ConfigMap"]["data"] == worker_settings()


def test_the_settings_are_the_workers_and_parse(tmp_path: Path) -> None:
    config = config_from(worker_settings(), tmp_path)
    assert (config.redis_host, config.mysql_host, config.vote_queue) == ("redis", "mysql", "votes")


def test_the_image_and_the_labels_name_the_package_version() -> None:
    kustomization = load_yaml(K8S / "kustomization.yaml")
    (image,) = kustomization["images"]
    assert image["newTag"] == version()
    assert "/" in image["newName"], "a registry, not a bare name"
    objects = by_kind(kustomize(K8S))
    template = objects["Deployment"]["spec"]["template"]
    (container,) = template["spec"]["containers"]
    assert container["image"] == f"{image['newName']}:{version()}"
    expected = {
        "app.kubernetes.io/name": "trio-worker",
        "app.kubernetes.io/instance": "trio-worker",
        "app.kubernetes.io/component": "worker",
        "app.kubernetes.io/part-of": "trio-worker",
        "app.kubernetes.io/version": version(),
        "app.kubernetes.io/managed-by": "kustomize",
    }
    for doc in objects.values():
        assert expected.items() <= doc["metadata"]["labels"].items(), doc["kind"]
    assert expected.items() <= template["metadata"]["labels"].items()
    # Selectors can't change on a live object: they stay on the name alone.
    selector = {"app.kubernetes.io/name": "trio-worker"}
    assert objects["Deployment"]["spec"]["selector"]["matchLabels"] == selector
    assert objects["Service"]["spec"]["selector"] == selector
    assert objects["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == selector
    assert objects["NetworkPolicy"]["spec"]["podSelector"]["matchLabels"] == selector


def test_the_network_policy_admits_monitoring_only_and_lets_out_the_stores_and_dns(
    tmp_path: Path,
) -> None:
    config = config_from(worker_settings(), tmp_path)
    objects = by_kind(kustomize(K8S))
    policy = objects["NetworkPolicy"]["spec"]
    assert sorted(policy["policyTypes"]) == ["Egress", "Ingress"]
    (ingress,) = policy["ingress"]
    assert ingress["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]
    assert ingress["ports"] == [{"protocol": "TCP", "port": config.http_port}]
    out = {(p["protocol"], p["port"]) for rule in policy["egress"] for p in rule["ports"]}
    assert out == {
        ("TCP", config.redis_port),
        ("TCP", config.mysql_port),
        ("UDP", 53),
        ("TCP", 53),
    }
    (dns,) = [
        rule
        for rule in policy["egress"]
        if ("UDP", 53) in {(p["protocol"], p["port"]) for p in rule["ports"]}
    ]
    assert dns["to"][0]["podSelector"] == {"matchLabels": {"k8s-app": "kube-dns"}}


def test_the_dashboard_ships_as_a_grafana_sidecar_config_map() -> None:
    built = [doc for doc in kustomize(MONITORING) if doc["kind"] == "ConfigMap"]
    (config_map,) = built
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    (content,) = config_map["data"].values()
    assert json.loads(content) == json.loads(DASHBOARD.read_text(encoding="utf-8"))


def test_the_dashboard_config_map_is_generated_from_dashboard_json(tmp_path: Path) -> None:
    target = MONITORING / "dashboard-configmap.yaml"
    shipped = target.read_text(encoding="utf-8")
    script = ROOT / "deploy" / "grafana" / "dashboard_configmap.py"
    # Run the generator on a copy of the repository's layout, never over the shipped file.
    copy = tmp_path / "repo"
    (copy / "deploy" / "grafana").mkdir(parents=True)
    (copy / "deploy" / "k8s" / "monitoring").mkdir(parents=True)
    (copy / "deploy" / "grafana" / "dashboard.json").write_bytes(DASHBOARD.read_bytes())
    (copy / "deploy" / "grafana" / "dashboard_configmap.py").write_bytes(script.read_bytes())
    subprocess.run(
        [sys.executable, str(copy / "deploy" / "grafana" / "dashboard_configmap.py")],
        check=True,
        timeout=60,
    )
    regenerated = (copy / "deploy" / "k8s" / "monitoring" / "dashboard-configmap.yaml").read_text()
    assert regenerated == shipped, "dashboard-configmap.yaml differs: run `just rules`"


def test_kedas_maximum_fits_mysqls_default_connection_limit() -> None:
    """Every worker keeps MYSQL_PER_WORKER connections, twice that for a moment while it
    replaces them all after a network failure (an abandoned session lives until the new one
    kills it); the rollout's surge adds a pod."""
    scaled = manifests(KEDA)["ScaledObject"]["spec"]
    surge = manifests()["Deployment"]["spec"]["strategy"]["rollingUpdate"]["maxSurge"]
    workers = scaled["maxReplicaCount"] + surge
    assert 2 * MYSQL_PER_WORKER * workers + OTHER_CLIENTS <= MYSQL_DEFAULT_MAX_CONNECTIONS
    operations = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    assert f"{MYSQL_PER_WORKER} MySQL connections" in operations
    assert f"maxReplicaCount: {scaled['maxReplicaCount']}" in operations
    assert str(MYSQL_DEFAULT_MAX_CONNECTIONS) in operations
