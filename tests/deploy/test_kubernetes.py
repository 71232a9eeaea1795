"""deploy/k8s: the manifests against the Kubernetes JSON schemas shipped in kubernetes-validate's
wheel (nothing is downloaded), and what `kubectl apply -k` would send.
"""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tests.deploy.common import (
    EXAMPLES,
    K8S,
    KUBERNETES_VERSION,
    config_from,
    example_secrets,
    kustomization_sources,
    kustomize,
    load_yaml,
    manifests,
    worker_settings,
)

# Placeholder values that must never reach a cluster through `kubectl apply -k`.
PLACEHOLDERS = ("REPLACE-ME", "change-me", "local-dev-only")
DEFAULT_SHUTDOWN_TIMEOUT_S = 25.0


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
            if source.suffix in (".yaml", ".yml"):
                for doc in yaml.safe_load_all(text):
                    assert not (doc and doc.get("kind") == "Secret"), f"{source} holds a Secret"
            for placeholder in PLACEHOLDERS:
                assert placeholder not in text, f"{source} holds {placeholder!r}"


def test_kustomize_build_holds_no_placeholder_secret() -> None:
    built = kustomize(K8S)
    assert {doc["kind"] for doc in built} >= {"Deployment", "ConfigMap"}
    assert [doc["metadata"]["name"] for doc in built if doc["kind"] == "Secret"] == []
    text = yaml.safe_dump_all(built)
    for placeholder in PLACEHOLDERS:
        assert placeholder not in text


def test_kubernetes_manifests_match_the_kubernetes_schemas() -> None:
    objects = manifests()
    for doc in example_secrets().values():
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    assert set(objects) == {
        "ServiceAccount",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "NetworkPolicy",
    }
    for doc in objects.values():
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_kustomization_lists_every_manifest() -> None:
    kustomization = load_yaml(K8S / "kustomization.yaml")
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    (generator,) = kustomization["configMapGenerator"]
    assert generator["envs"] == ["worker.env"]


def test_deployment_runs_safely_and_drains_before_it_is_killed(tmp_path: Path) -> None:
    objects = manifests()
    deployment = objects["Deployment"]
    config = config_from(worker_settings(), tmp_path)
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
    generated = load_yaml(K8S / "kustomization.yaml")["configMapGenerator"][0]["name"]
    assert container["envFrom"] == [{"configMapRef": {"name": generated}}]


def test_the_secret_is_mounted_where_mysql_password_file_points() -> None:
    objects = manifests()
    secret, deployment = example_secrets()["trio-worker-mysql"], objects["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    password_file = worker_settings()["MYSQL_PASSWORD_FILE"]
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
