"""deploy/galera: HAProxy's configuration is valid as shipped, and the health check's verdicts.

The configuration at work, against a real cluster that loses a node or its quorum, is
tests/infra/test_galera.py; here, what needs no cluster.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from types import ModuleType

import pytest

from tests.support.galera import CLUSTERCHECK, HAPROXY_CFG

SYNCED_PRIMARY = {
    "wsrep_cluster_status": "Primary",
    "wsrep_local_state": "4",
    "wsrep_local_state_comment": "Synced",
    "wsrep_ready": "ON",
    "read_only": "OFF",
}


def clustercheck() -> ModuleType:
    spec = importlib.util.spec_from_file_location("clustercheck", CLUSTERCHECK)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_haproxy_accepts_the_shipped_configuration_with_its_defaults() -> None:
    if shutil.which("haproxy") is None:
        pytest.skip("haproxy is not installed")
    done = subprocess.run(
        ["haproxy", "-c", "-f", str(HAPROXY_CFG)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_only_a_synced_writable_node_of_the_primary_component_is_available() -> None:
    verdict = clustercheck().verdict
    assert verdict(SYNCED_PRIMARY) == (True, "Synced and Primary")
    for change, reason in [
        ({"wsrep_cluster_status": "non-Primary"}, "wsrep_cluster_status=non-Primary"),
        (
            {"wsrep_local_state": "2", "wsrep_local_state_comment": "Donor/Desynced"},
            "wsrep_local_state=2 (Donor/Desynced)",
        ),
        (
            {"wsrep_local_state": "1", "wsrep_local_state_comment": "Joining"},
            "wsrep_local_state=1 (Joining)",
        ),
        ({"wsrep_ready": "OFF"}, "wsrep_ready=OFF"),
        ({"read_only": "ON"}, "read_only=ON"),
    ]:
        ok, why = verdict({**SYNCED_PRIMARY, **change})
        assert not ok, change
        assert reason in why
    ok, why = verdict({})  # a server without the wsrep provider
    assert not ok
    assert "wsrep_cluster_status=?" in why
