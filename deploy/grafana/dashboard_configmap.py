"""Write deploy/k8s/monitoring/dashboard-configmap.yaml from deploy/grafana/dashboard.json.

dashboard.json is the one source of the dashboard: Grafana in the compose stack provisions it
from the file, and kube-prometheus-stack's Grafana loads it from this ConfigMap (its dashboard
sidecar picks up ConfigMaps labelled `grafana_dashboard: "1"`). `just rules` runs this script;
tests/deploy/test_kubernetes_safety.py fails while the two differ.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "deploy" / "grafana" / "dashboard.json"
TARGET = ROOT / "deploy" / "k8s" / "monitoring" / "dashboard-configmap.yaml"
HEADER = (
    "# Generated from deploy/grafana/dashboard.json by `just rules`: edit that one, not this.\n"
    '# kube-prometheus-stack\'s Grafana sidecar loads ConfigMaps labelled grafana_dashboard: "1"\n'
    "# (in its own namespace unless sidecar.dashboards.searchNamespace is ALL).\n"
)


class _Dumper(yaml.SafeDumper):
    """The dashboard as a literal block, readable in a diff."""


def _string(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar(
        "tag:yaml.org,2002:str", value, style="|" if "\n" in value else None
    )


_Dumper.add_representer(str, _string)


def dashboard_config_map(dashboard: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "trio-worker-dashboard",
            "labels": {"app.kubernetes.io/name": "trio-worker", "grafana_dashboard": "1"},
        },
        "data": {"trio-worker.json": json.dumps(dashboard, indent=2) + "\n"},
    }


def main() -> None:
    dashboard = json.loads(SOURCE.read_text(encoding="utf-8"))
    text = yaml.dump(
        dashboard_config_map(dashboard),
        Dumper=_Dumper,
        sort_keys=False,
        width=100,
        allow_unicode=True,
    )
    TARGET.write_text(HEADER + text, encoding="utf-8")


if __name__ == "__main__":
    main()
