"""KEDA: the ScaledObject against the fields KEDA's redis scaler reads, and the components
(deploy/k8s/components) that give KEDA's TriggerAuthentication and the worker one Secret.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.deploy.common import (
    COMPONENTS,
    CONTRACT_VARIABLES,
    K8S,
    KEDA,
    config_from,
    example_secrets,
    kustomize,
    manifests,
    run_kustomize,
    worker_settings,
)
from tests.deploy.schemas import SCALED_OBJECT_SCHEMA, validate


def test_keda_scales_on_the_vote_queue_length(tmp_path: Path) -> None:
    built = kustomize(overlay(tmp_path, ["keda"]))
    validate(built)
    objects = {doc["kind"]: doc for doc in built}
    scaled = objects["ScaledObject"]
    jsonschema.validate(scaled, SCALED_OBJECT_SCHEMA)
    # The scaler's server, database and list are the workers' own (worker.env, replaced in).
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
    (deployment,) = scaled_deployments([*manifests().values(), *manifests(KEDA).values()])
    assert "replicas" not in deployment["spec"]


def test_no_replica_count_where_keda_owns_it_as_kustomize_builds_it(tmp_path: Path) -> None:
    (built,) = scaled_deployments(kustomize(overlay(tmp_path, ["keda"])))
    assert "replicas" not in built["spec"]


def test_the_scaler_follows_a_queue_changed_in_an_overlay(tmp_path: Path) -> None:
    """Settings live in one place: an overlay that changes the workers' queue, server or
    database changes KEDA's with them."""
    directory = overlay(tmp_path, ["keda"])
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    kustomization["configMapGenerator"] = [
        {
            "name": "trio-worker",
            "behavior": "merge",
            "literals": ["VOTE_QUEUE=ballots", "REDIS_HOST=cache.example", "REDIS_DB=3"],
        }
    ]
    (directory / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    objects = {doc["kind"]: doc for doc in kustomize(directory)}
    (trigger,) = objects["ScaledObject"]["spec"]["triggers"]
    assert trigger["metadata"]["listName"] == "ballots"
    assert trigger["metadata"]["address"] == f"cache.example:{worker_settings()['REDIS_PORT']}"
    assert trigger["metadata"]["databaseIndex"] == "3"


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


@pytest.mark.parametrize(
    "components", [["keda", "redis-auth"], ["keda", "redis-auth", "redis-tls"]]
)
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


@pytest.mark.parametrize("components", [["redis-tls"], ["keda", "redis-tls"]])
def test_redis_tls_without_redis_auth_fails_the_build(
    tmp_path: Path, components: list[str]
) -> None:
    """TLS reads its CA from redis-auth's mount (and extends its TriggerAuthentication); alone
    it must fail, not half-apply."""
    result = run_kustomize(overlay(tmp_path, components))
    assert result.returncode != 0
    assert "testing value /data/REDIS_PASSWORD_FILE failed" in result.stderr


@pytest.mark.parametrize("components", [["redis-auth"], ["redis-auth", "redis-tls"]])
def test_redis_components_without_keda_add_no_keda_object(
    tmp_path: Path, components: list[str]
) -> None:
    built = kustomize(overlay(tmp_path, components))
    validate(built)
    assert [doc["kind"] for doc in built if doc["apiVersion"].startswith("keda.sh/")] == []
    (config_map,) = [doc for doc in built if doc["kind"] == "ConfigMap"]
    (deployment,) = [doc for doc in built if doc["kind"] == "Deployment"]
    assert config_map["data"]["REDIS_PASSWORD_FILE"] == secret_file(
        deployment, "trio-worker-redis", "password"
    )
