"""What the deploy tests share: the paths under deploy/, loading YAML, the manifests and the
kustomize walk, the Dockerfile's stages, the dashboard's and the alerts' PromQL.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from trio_worker.config import Config, from_env

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
EXAMPLES = K8S / "examples"
COMPONENTS = K8S / "components"
KEDA = COMPONENTS / "keda"
MONITORING = K8S / "monitoring"
# The workers' settings: kustomization.yaml generates the ConfigMap from this file.
WORKER_ENV = K8S / "worker.env"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboard.json"
KUBERNETES_VERSION = "1.30.0"
# The variables docs/contract.md names; a manifest setting anything else sets a typo.
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


def manifests(directory: Path = K8S) -> dict[str, dict[str, Any]]:
    """Every object in a directory's YAML files by kind (one of each), kustomization.yaml
    aside: deploy/k8s by default, or a component's."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(directory.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            assert doc["kind"] not in found, f"two {doc['kind']} objects"
            found[doc["kind"]] = doc
    return found


def worker_settings(path: Path = WORKER_ENV) -> dict[str, str]:
    """An env file as kustomize's configMapGenerator reads it: KEY=value lines, # comments."""
    settings: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not KEY=value: {line!r}"
        assert key not in settings, f"{path.name}: {key} twice"
        settings[key] = value
    return settings


def config_from(variables: dict[str, Any], tmp_path: Path) -> Config:
    """Parse a manifest's environment exactly as the worker would (the secret file stubbed)."""
    assert set(variables) <= CONTRACT_VARIABLES, set(variables) - CONTRACT_VARIABLES
    env = {k: str(v) for k, v in variables.items()}
    if "MYSQL_PASSWORD_FILE" in env:
        secret = tmp_path / "mysql-password"
        secret.write_text("s3cret\n", encoding="utf-8")
        env["MYSQL_PASSWORD_FILE"] = str(secret)
    return from_env(env)


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


def kustomization_sources(directory: Path) -> list[Path]:
    """Every file a kustomization (or component) pulls in, following directories recursively.

    The few kustomize features deploy/k8s uses (resources, components, patches, generators'
    files), read in Python, so that what can reach `kubectl apply -k` is checked even where
    kubectl is missing.
    """
    kustomization = load_yaml(directory / "kustomization.yaml")
    files = [directory / "kustomization.yaml"]
    for entry in [*kustomization.get("resources", []), *kustomization.get("components", [])]:
        target = (directory / entry).resolve()
        files += kustomization_sources(target) if target.is_dir() else [target]
    for patch in kustomization.get("patches", []):
        if "path" in patch:
            files.append((directory / patch["path"]).resolve())
    for generator in kustomization.get("configMapGenerator", []):
        for entry in [*generator.get("envs", []), *generator.get("files", [])]:
            files.append((directory / entry.split("=")[-1]).resolve())
    return files


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


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def dashboard_exprs() -> list[str]:
    return [t["expr"] for panel in dashboard()["panels"] for t in panel["targets"]]


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in load_yaml(ALERTS)["groups"] for rule in group["rules"]]


# A label matcher on `job`: the job's name depends on how the workers are scraped.
JOB_MATCHER = re.compile(r"\bjob\s*(=~|!~|!=|=)")

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
