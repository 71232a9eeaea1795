"""Write deploy/k8s/monitoring/prometheusrule.yaml from deploy/prometheus/alerts.yml.

alerts.yml is the one source of the alert rules: Prometheus (the compose stack) loads it as a
rule file, and the Prometheus Operator gets the same groups inside a PrometheusRule. `just rules`
runs this script; tests/deploy/test_monitoring.py fails while the two differ.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "deploy" / "prometheus" / "alerts.yml"
TARGET = ROOT / "deploy" / "k8s" / "monitoring" / "prometheusrule.yaml"
HEADER = (
    "# Generated from deploy/prometheus/alerts.yml by `just rules`: edit that file, not this one.\n"
    '# Runbooks: docs/operations.md, section "Runbooks" (each alert\'s runbook_url).\n'
)


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the longer expressions) as literal blocks, as in alerts.yml."""


def _string(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar(
        "tag:yaml.org,2002:str", value, style="|" if "\n" in value else None
    )


_Dumper.add_representer(str, _string)


def prometheus_rule(groups: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "trio-worker", "labels": {"app.kubernetes.io/name": "trio-worker"}},
        "spec": {"groups": groups},
    }


def main() -> None:
    groups = yaml.safe_load(SOURCE.read_text(encoding="utf-8"))["groups"]
    text = yaml.dump(
        prometheus_rule(groups), Dumper=_Dumper, sort_keys=False, width=100, allow_unicode=True
    )
    TARGET.write_text(HEADER + text, encoding="utf-8")


if __name__ == "__main__":
    main()
