"""deploy/ and the Dockerfile, validated offline.

Kubernetes manifests against the Kubernetes JSON schemas shipped in kubernetes-validate's wheel
(nothing is downloaded), the KEDA ScaledObject against the fields KEDA's redis scaler reads,
alert rules with promtool (and structurally in Python, so the check never vanishes), and every
metric the dashboard and the alerts use against a live worker's /metrics.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import time
import tomllib
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import kubernetes_validate
import pymysql
import pytest
import redis
import trio
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.conftest import wait_until
from tests.helpers import push_raw, push_votes, row_count
from trio_worker.config import Config, from_env

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
EXAMPLES = K8S / "examples"
COMPONENTS = K8S / "components"
MONITORING = K8S / "monitoring"
# Placeholder values that must never reach a cluster through `kubectl apply -k`.
PLACEHOLDERS = ("REPLACE-ME", "change-me", "local-dev-only")
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
ALERT_TESTS = DEPLOY / "prometheus" / "alerts.test.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboard.json"
LOCK = ROOT / "requirements.lock"
KUBERNETES_VERSION = "1.30.0"
DEFAULT_SHUTDOWN_TIMEOUT_S = 25.0
# Series Prometheus makes itself, not the worker.
PROMETHEUS_SERIES = {"up"}
# The variables CONTRACT.md names; a manifest setting anything else sets a typo.
CONTRACT_VARIABLES = frozenset(
    {
        "REDIS_HOST",
        "REDIS_PORT",
        "REDIS_DB",
        "REDIS_PASSWORD",
        "VOTE_QUEUE",
        "MYSQL_HOST",
        "MYSQL_PORT",
        "MYSQL_USER",
        "MYSQL_PASSWORD",
        "MYSQL_DATABASE",
        "PORT",
        "HOST",
        "MYSQL_PASSWORD_FILE",
        "BATCH_SIZE",
        "FLUSH_INTERVAL_MS",
        "WORKER_ID",
        "HEARTBEAT_TTL_S",
        "SHUTDOWN_TIMEOUT_S",
        "QUEUE_CONSUME_FROM",
        "VOTE_CHOICES",
        "DEAD_LETTER_QUEUE",
        "LOG_LEVEL",
        "LOG_FORMAT",
        "MAX_MESSAGE_BYTES",
        "LEDGER_RETENTION_S",
        "MYSQL_READ_TIMEOUT_S",
        # Connecting to secured infrastructure.
        "REDIS_URL",
        "REDIS_USERNAME",
        "REDIS_PASSWORD_FILE",
        "REDIS_TLS",
        "REDIS_TLS_CA_FILE",
        "REDIS_TLS_CERT_FILE",
        "REDIS_TLS_KEY_FILE",
        "REDIS_TLS_VERIFY",
        "REDIS_SENTINELS",
        "REDIS_SENTINEL_MASTER",
        "REDIS_SENTINEL_PASSWORD",
        "REDIS_SENTINEL_PASSWORD_FILE",
        "REDIS_WAIT_REPLICAS",
        "REDIS_CLUSTER",
        "MYSQL_SSL_MODE",
        "MYSQL_SSL_CA",
        "MYSQL_SSL_CERT",
        "MYSQL_SSL_KEY",
        "MYSQL_UNIX_SOCKET",
    }
)


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def manifests() -> dict[str, dict[str, Any]]:
    """Every object under deploy/k8s by kind (one of each), kustomization.yaml aside."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            assert doc["kind"] not in found, f"two {doc['kind']} objects"
            found[doc["kind"]] = doc
    return found


def config_from(variables: dict[str, Any], tmp_path: Path) -> Config:
    """Parse a manifest's environment exactly as the worker would (the secret file stubbed)."""
    assert set(variables) <= CONTRACT_VARIABLES, set(variables) - CONTRACT_VARIABLES
    env = {k: str(v) for k, v in variables.items()}
    if "MYSQL_PASSWORD_FILE" in env:
        secret = tmp_path / "mysql-password"
        secret.write_text("s3cret\n", encoding="utf-8")
        env["MYSQL_PASSWORD_FILE"] = str(secret)
    return from_env(env)


# --- Kubernetes --------------------------------------------------------------------------------


def example_secrets() -> dict[str, dict[str, Any]]:
    """deploy/k8s/examples/secrets.yaml by name: the key names the manifests must read."""
    docs = yaml.safe_load_all((EXAMPLES / "secrets.yaml").read_text(encoding="utf-8"))
    return {doc["metadata"]["name"]: doc for doc in docs}


def run_kustomize(directory: Path) -> subprocess.CompletedProcess[str]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip(
            "kubectl not installed (its `kubectl kustomize` builds deploy/k8s); the"
            " kustomization files are still walked by test_no_kustomization_can_reach_a_secret"
        )
    return subprocess.run(
        [kubectl, "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def kustomize(directory: Path) -> list[dict[str, Any]]:
    """`kubectl kustomize directory`: the objects `kubectl apply -k` would send."""
    result = run_kustomize(directory)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def overlay(tmp_path: Path, components: list[str]) -> Path:
    """A user's overlay: deploy/k8s plus the named components of deploy/k8s/components, in order."""
    directory = tmp_path / "overlay"
    directory.mkdir()
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        # kustomize takes only relative paths.
        "resources": [os.path.relpath(K8S, directory)],
        "components": [os.path.relpath(COMPONENTS / name, directory) for name in components],
    }
    (directory / "kustomization.yaml").write_text(yaml.safe_dump(kustomization), encoding="utf-8")
    return directory


def kustomization_sources(directory: Path) -> list[Path]:
    """Every file a kustomization (or component) pulls in, following directories recursively.

    The few kustomize features deploy/k8s uses (resources, components, patches), read in Python,
    so that what can reach `kubectl apply -k` is checked even where kubectl is missing.
    """
    kustomization = load_yaml(directory / "kustomization.yaml")
    files = [directory / "kustomization.yaml"]
    for entry in [*kustomization.get("resources", []), *kustomization.get("components", [])]:
        target = (directory / entry).resolve()
        files += kustomization_sources(target) if target.is_dir() else [target]
    for patch in kustomization.get("patches", []):
        if "path" in patch:
            files.append((directory / patch["path"]).resolve())
    return files


def all_kustomizations() -> list[Path]:
    return sorted(p.parent for p in K8S.rglob("kustomization.yaml"))


def test_no_kustomization_can_reach_a_secret() -> None:
    """A Secret under `kubectl apply -k` would overwrite the user's real password on each apply."""
    assert K8S in all_kustomizations()
    for directory in all_kustomizations():
        kustomization = load_yaml(directory / "kustomization.yaml")
        assert "secretGenerator" not in kustomization, directory
        for source in kustomization_sources(directory):
            assert EXAMPLES not in source.parents, f"{directory} pulls in {source}"
            text = source.read_text(encoding="utf-8")
            for doc in yaml.safe_load_all(text):
                assert not (doc and doc.get("kind") == "Secret"), f"{source} holds a Secret"
            for placeholder in PLACEHOLDERS:
                assert placeholder not in text, f"{source} holds {placeholder!r}"


def test_kustomize_build_holds_no_placeholder_secret() -> None:
    built = kustomize(K8S)
    assert {doc["kind"] for doc in built} >= {"Deployment", "ScaledObject"}
    assert [doc["metadata"]["name"] for doc in built if doc["kind"] == "Secret"] == []
    text = yaml.safe_dump_all(built)
    for placeholder in PLACEHOLDERS:
        assert placeholder not in text


def test_kubernetes_manifests_match_the_kubernetes_schemas() -> None:
    objects = manifests()
    for doc in example_secrets().values():
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    assert set(objects) == {
        "ConfigMap",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "ScaledObject",
    }
    for kind, doc in objects.items():
        if kind == "ScaledObject":
            continue  # a KEDA CRD: checked below
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_kustomization_lists_every_manifest() -> None:
    kustomization = load_yaml(K8S / "kustomization.yaml")
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}


def test_deployment_runs_safely_and_drains_before_it_is_killed(tmp_path: Path) -> None:
    objects = manifests()
    config_map, deployment = objects["ConfigMap"], objects["Deployment"]
    config = config_from(config_map["data"], tmp_path)
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]

    grace = pod["terminationGracePeriodSeconds"]
    assert grace > config.shutdown_timeout_s
    assert grace > DEFAULT_SHUTDOWN_TIMEOUT_S
    # Liveness (and the startup probe that holds it off) must not depend on the stores: a MySQL
    # outage would otherwise restart every worker. Readiness is where the stores count.
    assert container["livenessProbe"]["httpGet"]["path"] == "/live"
    assert container.get("startupProbe", {"httpGet": {"path": "/live"}})["httpGet"]["path"] == (
        "/live"
    )
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports[container["livenessProbe"]["httpGet"]["port"]] == config.http_port
    assert ports[container["readinessProbe"]["httpGet"]["port"]] == config.http_port
    for bound in ("requests", "limits"):
        assert set(container["resources"][bound]) >= {"cpu", "memory"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert container["envFrom"] == [{"configMapRef": {"name": config_map["metadata"]["name"]}}]


def test_the_secret_is_mounted_where_mysql_password_file_points() -> None:
    objects = manifests()
    secret, deployment = example_secrets()["trio-worker-mysql"], objects["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    password_file = objects["ConfigMap"]["data"]["MYSQL_PASSWORD_FILE"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    for mount in container["volumeMounts"]:
        source = volumes[mount["name"]].get("secret")
        if source is None:
            continue
        assert source["secretName"] == secret["metadata"]["name"]
        (item,) = source["items"]
        assert item["key"] in secret["stringData"]
        assert f"{mount['mountPath']}/{item['path']}" == password_file
        assert mount["readOnly"] is True
        return
    pytest.fail("no Secret volume is mounted")


def test_service_and_disruption_budget_select_the_worker_pods() -> None:
    objects = manifests()
    pod_labels = objects["Deployment"]["spec"]["template"]["metadata"]["labels"]
    service = objects["Service"]["spec"]
    assert service["selector"].items() <= pod_labels.items()
    (container,) = objects["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert {p["targetPort"] for p in service["ports"]} <= {p["name"] for p in container["ports"]}
    pdb = objects["PodDisruptionBudget"]["spec"]
    assert pdb["selector"]["matchLabels"].items() <= pod_labels.items()
    # A store outage makes every worker unready; node drains must still be able to evict them.
    assert pdb["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


def scaled_deployments(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The Deployments among objects that a ScaledObject among them targets."""
    targets = {
        doc["spec"]["scaleTargetRef"]["name"]
        for doc in objects
        if doc["kind"] == "ScaledObject"
        and doc["spec"]["scaleTargetRef"].get("kind", "Deployment") == "Deployment"
    }
    return [d for d in objects if d["kind"] == "Deployment" and d["metadata"]["name"] in targets]


def test_no_replica_count_where_keda_owns_it() -> None:
    """`replicas` beside a ScaledObject is re-applied by every apply and fights the autoscaler."""
    (deployment,) = scaled_deployments(list(manifests().values()))
    assert "replicas" not in deployment["spec"]


def test_no_replica_count_where_keda_owns_it_as_kustomize_builds_it() -> None:
    (built,) = scaled_deployments(kustomize(K8S))
    assert "replicas" not in built["spec"]


# What KEDA (v2) reads from a ScaledObject with its redis list scaler; unknown keys are typos.
SCALED_OBJECT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "spec": {
            "type": "object",
            "required": ["scaleTargetRef", "triggers"],
            "additionalProperties": False,
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "required": ["name"],
                    "additionalProperties": False,
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "name": {"type": "string"},
                    },
                },
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "pollingInterval": {"type": "integer", "minimum": 1},
                "cooldownPeriod": {"type": "integer", "minimum": 0},
                "idleReplicaCount": {"type": "integer", "minimum": 0},
                "advanced": {"type": "object"},
                "fallback": {"type": "object"},
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["type", "metadata"],
                        "properties": {
                            "type": {"const": "redis"},
                            "authenticationRef": {
                                "type": "object",
                                "required": ["name"],
                                "additionalProperties": False,
                                "properties": {
                                    "name": {"type": "string"},
                                    "kind": {"enum": ["TriggerAuthentication"]},
                                },
                            },
                            "metadata": {
                                "type": "object",
                                "required": ["listName", "listLength"],
                                "additionalProperties": {"type": "string"},
                                "propertyNames": {
                                    "enum": [
                                        "address",
                                        "addressFromEnv",
                                        "host",
                                        "hostFromEnv",
                                        "port",
                                        "portFromEnv",
                                        "usernameFromEnv",
                                        "passwordFromEnv",
                                        "listName",
                                        "listLength",
                                        "activationListLength",
                                        "enableTLS",
                                        "unsafeSsl",
                                        "databaseIndex",
                                    ]
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}


# A KEDA TriggerAuthentication as the redis scaler reads it: Secret keys for its parameters.
TRIGGER_AUTHENTICATION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "TriggerAuthentication"},
        "spec": {
            "type": "object",
            "required": ["secretTargetRef"],
            "additionalProperties": False,
            "properties": {
                "secretTargetRef": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["parameter", "name", "key"],
                        "additionalProperties": False,
                        "properties": {
                            # The redis scaler's authentication parameters.
                            "parameter": {
                                "enum": ["username", "password", "tls", "ca", "cert", "key"]
                            },
                            "name": {"type": "string", "minLength": 1},
                            "key": {"type": "string", "minLength": 1},
                        },
                    },
                },
            },
        },
    },
}
# The Prometheus Operator's CRDs (monitoring.coreos.com/v1), reduced to the fields these files can
# use, under the CRDs' own property names. The API server prunes unknown fields silently, so a
# misspelt one (`podMetricEndpoints`) would just scrape nothing: here it is an error.
_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_DURATION = {
    "type": "string",
    "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?"
    r"(([0-9]+)ms)?)$",
}
_OBJECT_META = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": {"type": "string"}, "labels": _STRING_MAP},
}
POD_MONITOR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PodMonitor"},
        "metadata": _OBJECT_META,
        "spec": {
            "type": "object",
            "required": ["selector", "podMetricsEndpoints"],
            "additionalProperties": False,
            "properties": {
                "selector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"matchLabels": _STRING_MAP, "matchExpressions": {}},
                },
                "namespaceSelector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "any": {"type": "boolean"},
                        "matchNames": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "jobLabel": {"type": "string"},
                "podTargetLabels": {"type": "array", "items": {"type": "string"}},
                "sampleLimit": {"type": "integer"},
                "targetLimit": {"type": "integer"},
                "podMetricsEndpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "portNumber": {"type": "integer"},
                            "path": {"type": "string"},
                            "scheme": {"enum": ["http", "https"]},
                            "interval": _DURATION,
                            "scrapeTimeout": _DURATION,
                            "honorLabels": {"type": "boolean"},
                            "honorTimestamps": {"type": "boolean"},
                            "relabelings": {"type": "array"},
                            "metricRelabelings": {"type": "array"},
                            "filterRunning": {"type": "boolean"},
                        },
                    },
                },
            },
        },
    },
}
PROMETHEUS_RULE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PrometheusRule"},
        "metadata": _OBJECT_META,
        "spec": {
            "type": "object",
            "required": ["groups"],
            "additionalProperties": False,
            "properties": {
                "groups": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name", "rules"],
                        "additionalProperties": False,
                        "properties": {
                            "name": {"type": "string", "minLength": 1},
                            "interval": _DURATION,
                            "limit": {"type": "integer"},
                            "partial_response_strategy": {"type": "string"},
                            "rules": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "required": ["expr"],
                                    "additionalProperties": False,
                                    "properties": {
                                        "alert": {"type": "string"},
                                        "record": {"type": "string"},
                                        "expr": {"type": ["string", "integer"]},
                                        "for": _DURATION,
                                        "keep_firing_for": _DURATION,
                                        "labels": _STRING_MAP,
                                        "annotations": _STRING_MAP,
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}
CUSTOM_RESOURCE_SCHEMAS = {
    "ScaledObject": SCALED_OBJECT_SCHEMA,
    "TriggerAuthentication": TRIGGER_AUTHENTICATION_SCHEMA,
    "PodMonitor": POD_MONITOR_SCHEMA,
    "PrometheusRule": PROMETHEUS_RULE_SCHEMA,
}


def validate(objects: list[dict[str, Any]]) -> None:
    """Built-in kinds against the Kubernetes schemas, custom resources against ours."""
    for doc in objects:
        if doc["kind"] in CUSTOM_RESOURCE_SCHEMAS:
            jsonschema.validate(doc, CUSTOM_RESOURCE_SCHEMAS[doc["kind"]])
        else:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def secret_file(deployment: dict[str, Any], secret: str, key: str) -> str | None:
    """Where the worker container reads ``key`` of the Secret ``secret``, if it is mounted."""
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    for volume in pod["volumes"]:
        source = volume.get("secret")
        if source is None or source["secretName"] != secret or volume["name"] not in mounts:
            continue
        # Without `items` every key is a file of its own name; with them, only those listed.
        paths = {item["key"]: item["path"] for item in source.get("items", [])} or {key: key}
        if key in paths:
            return f"{mounts[volume['name']]}/{paths[key]}"
    return None


@pytest.mark.parametrize("components", [["redis-auth"], ["redis-auth", "redis-tls"]])
def test_redis_components_give_keda_and_the_worker_the_same_secret(
    tmp_path: Path, components: list[str]
) -> None:
    built = kustomize(overlay(tmp_path, components))
    validate(built)
    objects = {doc["kind"]: doc for doc in built}
    assert "Secret" not in objects
    settings = objects["ConfigMap"]["data"]
    assert set(settings) <= CONTRACT_VARIABLES, set(settings) - CONTRACT_VARIABLES
    auth = objects["TriggerAuthentication"]
    (trigger,) = objects["ScaledObject"]["spec"]["triggers"]
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]

    examples = example_secrets()
    worker_reads = {}
    for ref in auth["spec"]["secretTargetRef"]:
        # The key KEDA reads is one the documented Secret has, and the worker reads the same one.
        assert ref["key"] in examples[ref["name"]]["stringData"], ref
        worker_reads[ref["parameter"]] = secret_file(objects["Deployment"], ref["name"], ref["key"])
    assert settings["REDIS_PASSWORD_FILE"] == worker_reads["password"]
    if "redis-tls" in components:
        assert settings["REDIS_TLS"] == "true"
        assert settings["REDIS_TLS_CA_FILE"] == worker_reads["ca"]
        assert examples["trio-worker-redis"]["stringData"]["tls"] == "enable"  # KEDA's word
    else:
        assert "tls" not in worker_reads
        assert "REDIS_TLS" not in settings


def test_redis_tls_without_redis_auth_fails_the_build(tmp_path: Path) -> None:
    """TLS extends redis-auth's TriggerAuthentication; alone it must fail, not half-apply."""
    result = run_kustomize(overlay(tmp_path, ["redis-tls"]))
    assert result.returncode != 0
    assert "test operation does not apply" in result.stderr


# --- Prometheus Operator (deploy/k8s/monitoring) -----------------------------------------------


def monitoring_objects() -> dict[str, dict[str, Any]]:
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
    assert sorted(doc["kind"] for doc in built) == ["PodMonitor", "PrometheusRule"]
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
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            assert not str((doc or {}).get("apiVersion", "")).startswith("monitoring.coreos.com")


def test_deploy_k8s_builds_without_operator_objects() -> None:
    groups = {doc["apiVersion"].split("/")[0] for doc in kustomize(K8S)}
    assert "monitoring.coreos.com" not in groups


def test_keda_scales_on_the_vote_queue_length(tmp_path: Path) -> None:
    objects = manifests()
    scaled = objects["ScaledObject"]
    jsonschema.validate(scaled, SCALED_OBJECT_SCHEMA)
    config = config_from(objects["ConfigMap"]["data"], tmp_path)
    spec = scaled["spec"]
    target = spec["scaleTargetRef"]
    assert target["name"] == objects["Deployment"]["metadata"]["name"]
    assert target.get("kind", "Deployment") == "Deployment"
    assert spec["minReplicaCount"] >= 1  # one worker keeps draining what is in flight
    assert spec["maxReplicaCount"] > spec["minReplicaCount"]
    (trigger,) = spec["triggers"]
    meta = trigger["metadata"]
    # Both act only between 0 and 1 replicas: set beside a minimum of 1 they only mislead.
    assert "cooldownPeriod" not in spec
    assert "activationListLength" not in meta
    assert meta["listName"] == config.vote_queue
    assert meta["address"] == config.redis_address
    assert int(meta.get("databaseIndex", "0")) == config.redis_db
    assert int(meta["listLength"]) > 0


# --- Docker ------------------------------------------------------------------------------------


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile as stages of (instruction, arguments), continuation lines joined."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, args = line.partition(" ")
        if instruction.upper() == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((instruction.upper(), args.strip()))
    return stages


def test_dockerfile_is_multi_stage_non_root_and_execs_the_worker() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2
    final = dict(stages[-1])  # the last of each instruction wins, as in Docker
    assert "-slim" in final["FROM"]
    user = final["USER"].split(":")[0]
    assert user not in ("root", "0")
    # Exec form (a JSON list): the worker is PID 1 and receives SIGTERM itself.
    assert json.loads(final["ENTRYPOINT"]) == ["trio-worker"]
    assert json.loads(final["CMD"]) == ["run"]
    # /live: a container health check must not fail (and get the container restarted) because a
    # store is down.
    assert "/live'" in final["HEALTHCHECK"]
    assert "/health" not in final["HEALTHCHECK"]
    assert final.get("STOPSIGNAL", "SIGTERM") == "SIGTERM"
    copied = [args for instruction, args in stages[-1] if instruction == "COPY"]
    assert copied
    assert all(a.startswith("--from=") for a in copied), "the runtime stage copies only builds"


def test_the_image_installs_the_locked_dependencies_then_the_package_alone() -> None:
    build = dockerfile_stages()[0]
    copies = [args for instruction, args in build if instruction == "COPY"]
    runs = [args for instruction, args in build if instruction == "RUN"]
    assert any(args.split()[0] == "requirements.lock" for args in copies)
    (from_lock,) = [run for run in runs if "-r requirements.lock" in run]
    assert "--require-hashes" in from_lock.split()
    (package,) = [run for run in runs if re.search(r"pip install [^&]* \.( |$)", run)]
    # Nothing unpinned: no dependency resolution, no isolated build environment from the index.
    assert {"--no-deps", "--no-build-isolation"} <= set(package.split())
    # The lock is in the build context.
    assert "!requirements.lock" in (ROOT / ".dockerignore").read_text(encoding="utf-8").split()


def locked_pins() -> dict[str, tuple[str, list[str]]]:
    """requirements.lock as {canonical name: (version, hashes)}."""
    pins: dict[str, tuple[str, list[str]]] = {}
    text = LOCK.read_text(encoding="utf-8").replace("\\\n", " ")
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement, *options = line.split(";")[0].split()
        name, _, version = requirement.partition("==")
        assert version, f"not pinned: {line}"
        hashes = [o.removeprefix("--hash=") for o in options if o.startswith("--hash=")]
        pins[canonicalize_name(name)] = (version, hashes)
    return pins


def test_the_lock_pins_every_runtime_dependency_for_the_images_python() -> None:
    """requirements.lock (`just lock`) covers pyproject.toml, with hashes, for the image."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    pins = locked_pins()
    needed = [*pyproject["project"]["dependencies"], *pyproject["build-system"]["requires"]]
    for entry in needed:
        requirement = Requirement(entry)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is not in requirements.lock: run `just lock`"
        version, _ = pins[name]
        assert requirement.specifier.contains(version, prereleases=True), (entry, version)
        # An extra's packages (redis[hiredis] -> hiredis), from the dependency's own metadata.
        for extra in requirement.extras:
            for dependency in importlib.metadata.requires(requirement.name) or []:
                brought = Requirement(dependency)
                marker = brought.marker
                if (
                    marker
                    and marker.evaluate({"extra": extra})
                    and not marker.evaluate({"extra": ""})
                ):
                    assert canonicalize_name(brought.name) in pins, f"{entry}: {brought.name}"
    assert [name for name, (_, hashes) in pins.items() if not hashes] == []
    # Resolved for the Python the image runs, which `just lock` reads from the Dockerfile.
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    (python_version,) = re.findall(r"^ARG PYTHON_VERSION=(\S+)$", dockerfile, re.MULTILINE)
    assert f"(Python {python_version} on Linux" in LOCK.read_text(encoding="utf-8")


# --- docker compose ----------------------------------------------------------------------------


def _seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)(ms|s|m)", duration)
    assert match, duration
    return int(match[1]) * {"ms": 0.001, "s": 1.0, "m": 60.0}[match[2]]


def compose_workers(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = compose["services"]
    return {name: s for name, s in services.items() if name.startswith("worker")}


def test_compose_stack_wires_mysql84_two_workers_prometheus_and_grafana(tmp_path: Path) -> None:
    compose = load_yaml(DEPLOY / "docker-compose.yml")
    services = compose["services"]
    assert set(services) >= {"redis", "mysql", "prometheus", "grafana"}
    workers = compose_workers(compose)
    assert len(workers) == 2
    mysql = services["mysql"]
    assert mysql["image"].startswith("mysql:8.4")
    host_ports = []
    for worker in workers.values():
        # A default account (not root), so MySQL 8's caching_sha2_password is what the worker
        # meets.
        config = config_from(worker["environment"], tmp_path)
        assert config.mysql_user == mysql["environment"]["MYSQL_USER"] != "root"
        assert config.mysql_database == mysql["environment"]["MYSQL_DATABASE"]
        assert config.mysql_host == "mysql"
        assert config.redis_host == "redis"
        assert worker["environment"]["MYSQL_PASSWORD_FILE"] == "/run/secrets/mysql_password"
        assert "mysql_password" in worker["secrets"]
        assert "replicas" not in worker.get("deploy", {})  # a fixed host port can't be shared
        assert worker["build"]["dockerfile"] == "Dockerfile"
        assert (DEPLOY / worker["build"]["context"] / "Dockerfile").is_file()
        assert _seconds(worker["stop_grace_period"]) > config.shutdown_timeout_s
        # Published on the loopback only, to the port the worker listens on.
        (published,) = worker["ports"]
        address, host_port, container_port = published.split(":")
        assert address == "127.0.0.1"
        assert int(container_port) == config.http_port
        host_ports.append(int(host_port))
    # `curl localhost:8080/health` after `just up` reaches a worker; the other has its own port.
    assert sorted(host_ports) == [8080, 8081]
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source} is missing"
    for secret in compose["secrets"].values():
        assert (DEPLOY / secret["file"]).is_file()


def test_compose_mysql_healthcheck_keeps_the_password_off_the_command_line() -> None:
    compose = load_yaml(DEPLOY / "docker-compose.yml")
    mysql = compose["services"]["mysql"]
    command = " ".join(mysql["healthcheck"]["test"])
    (secret,) = mysql["secrets"]
    password = (DEPLOY / compose["secrets"][secret]["file"]).read_text(encoding="utf-8").strip()
    assert password not in command
    # No -p<password>, -p <password> or --password=: the password comes from the secret file.
    assert not re.search(r"(^|\s)(-p|--password)", command), command
    assert f"/run/secrets/{secret}" in command
    assert "--host=127.0.0.1" in command  # over TCP: healthy once the real server listens


def test_prometheus_scrapes_the_workers_and_loads_the_alerts() -> None:
    prometheus = load_yaml(DEPLOY / "prometheus" / "prometheus.yml")
    compose = load_yaml(DEPLOY / "docker-compose.yml")
    mounts = dict(v.split(":")[:2] for v in compose["services"]["prometheus"]["volumes"])
    for rule_file in prometheus["rule_files"]:
        source = next(s for s, target in mounts.items() if target == rule_file)
        assert (DEPLOY / source).resolve() == ALERTS
    jobs = {job["job_name"]: job for job in prometheus["scrape_configs"]}
    (static,) = jobs["trio-worker"]["static_configs"]
    ports = {
        name: int(w["ports"][0].split(":")[-1]) for name, w in compose_workers(compose).items()
    }
    assert set(static["targets"]) == {f"{name}:{port}" for name, port in ports.items()}


def test_grafana_provisions_the_datasource_the_dashboard_uses() -> None:
    provisioning = DEPLOY / "grafana" / "provisioning"
    (datasource,) = load_yaml(provisioning / "datasources" / "prometheus.yml")["datasources"]
    (provider,) = load_yaml(provisioning / "dashboards" / "trio-worker.yml")["providers"]
    compose = load_yaml(DEPLOY / "docker-compose.yml")
    mounts = dict(v.split(":")[:2] for v in compose["services"]["grafana"]["volumes"])
    dashboard_target = mounts["./grafana/dashboard.json"]
    assert dashboard_target.startswith(provider["options"]["path"] + "/")
    assert datasource["url"] == "http://prometheus:9090"
    # The dashboard names no datasource uid: its `datasource` variable picks the default one.
    assert datasource["type"] == "prometheus"
    assert datasource["isDefault"] is True


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def test_dashboard_queries_through_its_datasource_and_namespace_variables() -> None:
    """Importable anywhere: no fixed datasource uid, no job name, any namespace or none."""
    board = dashboard()
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    namespace = variables["namespace"]
    assert namespace["includeAll"] is True
    # "All" must also match series without a namespace label (compose has none).
    assert re.fullmatch(namespace["allValue"], "")
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    via_variable = {"type": "prometheus", "uid": "${datasource}"}
    for panel in board["panels"]:
        assert panel["datasource"] == via_variable, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == via_variable, panel["title"]
            expr = target["expr"]
            assert not _JOB_MATCHER.search(expr), expr
            for name in metric_names(expr):
                selector = re.compile(re.escape(name) + r'\{[^}]*namespace=~"\$namespace"')
                assert selector.search(expr), f"{panel['title']}: {name} outside $namespace"
            # Windows follow the scrape interval and the time range, never a fixed duration.
            for window in re.findall(r"\[([^\]]*)\]", expr):
                assert window in ("$__rate_interval", "$__range"), f"{panel['title']}: [{window}]"


# Gauges every worker samples alike (one list): combined with max, never summed.
SHARED_GAUGES = ("vote_queue_depth", "vote_queue_oldest_age_seconds")


def test_dashboard_and_alerts_aggregate_sensibly() -> None:
    exprs = dashboard_exprs() + [rule["expr"] for rule in alert_rules()]
    for expr in exprs:
        for name in metric_names(expr):
            for match in re.finditer(rf"\b{re.escape(name)}\b", expr):
                before = expr[: match.start()].rstrip()
                if name.endswith("_total"):
                    # A counter only means something as a rate or an increase.
                    assert re.search(r"\b(rate|irate|increase)\($", before), expr
                if name in SHARED_GAUGES:
                    # N workers report the same queue: a sum would count it N times.
                    assert not re.search(r"\bsum\b[^()]*\($", before), expr
    assert any("max(vote_queue_depth" in expr for expr in dashboard_exprs())


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
}
# A label matcher on `job`: the job's name depends on how the workers are scraped.
_JOB_MATCHER = re.compile(r"\bjob\s*(=~|!~|!=|=)")


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in load_yaml(ALERTS)["groups"] for rule in group["rules"]]


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
    assert _JOB_MATCHER.search('up{job="trio-worker"}')
    for rule in alert_rules():
        assert not _JOB_MATCHER.search(rule["expr"]), rule["alert"]


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


# --- metric names against a live worker --------------------------------------------------------

_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
_KEYWORDS |= {"and", "or", "unless", "bool", "offset", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (not functions, labels or keywords)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = re.sub(r"\boffset\s+-?[0-9smhdwy]+", " ", text)  # offset 5m
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"(?<![A-Za-z_:])\d+(\.\d+)?([eE][+-]?\d+)?", " ", text)  # numbers
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        is_call = text[match.end() :].lstrip().startswith("(")
        if not is_call and match[0].lower() not in _KEYWORDS:
            names.add(match[0])
    return names


def test_metric_names_reads_promql() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (job, le) (rate(a_seconds_bucket{x="y"}[5m]))) > 0.5'
        " and on (job) max(b_total offset 5m) / ignoring(le) c:rate5m unless absent(up == 1)"
    )
    assert metric_names(expr) == {"a_seconds_bucket", "b_total", "c:rate5m", "up"}


def dashboard_exprs() -> list[str]:
    return [t["expr"] for panel in dashboard()["panels"] for t in panel["targets"]]


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
    lock = pymysql.connect(
        host=config.mysql_host,
        port=config.mysql_port,
        user=config.mysql_user,
        password=config.mysql_password,
        database=config.mysql_database,
    )
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
    async with httpx.AsyncClient(timeout=10) as client:
        with trio.move_on_after(30):
            # Polling: readiness is only observable over HTTP.
            while (await client.get(worker.url + "/ready")).status_code != 200:  # noqa: ASYNC110
                await trio.sleep(0.1)
        answers = {path: (await client.get(worker.url + path)).status_code for path in paths}
    assert answers == dict.fromkeys(paths, 200)
