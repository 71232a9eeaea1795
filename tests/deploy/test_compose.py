"""deploy/docker-compose.yml: MySQL 8.4, two workers, Prometheus and Grafana, wired together."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tests.deploy.common import ALERTS, DEPLOY, config_from, load_yaml


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
