"""A real Prometheus server for the tests: on a free loopback port, with a storage directory of
its own, loading the shipped alert rules with every duration scaled from minutes to seconds.

Scaling divides each duration in the rules by 60: a rule's ``for`` and every range in its
expression (``[5m]`` becomes ``[5s]``, ``[1h]`` becomes ``[60s]``); nothing else in an expression
changes (``scaled_rules`` checks that), so what fires in the test is what the shipped rules say,
only sixty times sooner. The server scrapes and evaluates every second.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import yaml

from tests.support.servers import free_port

# A duration as Prometheus writes one: 90s, 5m, 1h30m.
_DURATION = r"(?:\d+(?:ms|s|m|h|d|w|y))+"
_RANGE = re.compile(rf"\[({_DURATION})(:{_DURATION})?\]")
_UNITS_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
SCALE = 60


def seconds(duration: str) -> float:
    return sum(
        int(n) * _UNITS_S[unit] for n, unit in re.findall(r"(\d+)(ms|s|m|h|d|w|y)", duration)
    )


def scaled(duration: str) -> str:
    """``5m`` → ``5s``: a duration divided by ``SCALE``, in whole seconds."""
    value = seconds(duration) / SCALE
    assert value >= 1, f"{duration} scales below a second"
    assert value == int(value), f"{duration} does not scale to whole seconds"
    return f"{int(value)}s"


def scale_expr(expr: str) -> str:
    def one(match: re.Match[str]) -> str:
        step = match[2]
        return f"[{scaled(match[1])}{':' + scaled(step[1:]) if step else ''}]"

    return _RANGE.sub(one, expr)


def scaled_rules(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rule groups with their durations scaled; expressions otherwise untouched."""
    out = []
    for group in groups:
        rules = []
        for rule in group["rules"]:
            copy = dict(rule, expr=scale_expr(rule["expr"]))
            if "for" in rule:
                copy["for"] = scaled(rule["for"])
            blank = _RANGE.sub("[D]", rule["expr"])
            assert _RANGE.sub("[D]", copy["expr"]) == blank, "only durations may change"
            rules.append(copy)
        out.append({**group, "rules": rules})
    return out


def binary() -> str:
    found = shutil.which("prometheus") or (
        "/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None
    )
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("prometheus is missing in CI: .ci/run installs Debian's prometheus package")
        pytest.skip("the prometheus server is not installed (apt-get install prometheus)")
    return found


@dataclass
class Prometheus:
    url: str
    log: Path

    async def get(self, path: str, **params: str) -> Any:
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.get(self.url + path, params=params)
        response.raise_for_status()
        body = response.json()
        assert body["status"] == "success", body
        return body["data"]

    async def alert_rules(self) -> list[dict[str, Any]]:
        """Every alerting rule with its state (``inactive``, ``pending``, ``firing``) and
        its active alerts, as ``/api/v1/rules`` says."""
        data = await self.get("/api/v1/rules", type="alert")
        return [rule for group in data["groups"] for rule in group["rules"]]

    async def query(self, expr: str) -> list[dict[str, Any]]:
        data = await self.get("/api/v1/query", query=expr)
        result: list[dict[str, Any]] = data["result"]
        return result


@asynccontextmanager
async def prometheus(
    directory: Path, rules: list[dict[str, Any]], targets: list[str]
) -> AsyncIterator[Prometheus]:
    """A Prometheus scraping ``targets`` (job ``trio-worker``) every second, with ``rules``."""
    await trio.Path(directory).mkdir(parents=True, exist_ok=True)
    await trio.Path(directory / "rules.yml").write_text(
        yaml.safe_dump({"groups": rules}, sort_keys=False)
    )
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(directory / "rules.yml")],
        "scrape_configs": [{"job_name": "trio-worker", "static_configs": [{"targets": targets}]}],
    }
    await trio.Path(directory / "prometheus.yml").write_text(
        yaml.safe_dump(config, sort_keys=False)
    )
    port = free_port()
    log = directory / "prometheus.log"
    with log.open("ab") as out:
        proc = await trio.lowlevel.open_process(
            [
                binary(),
                f"--config.file={directory / 'prometheus.yml'}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Prometheus(f"http://127.0.0.1:{port}", log)
    try:
        with trio.fail_after(30):
            while True:
                if proc.returncode is not None:
                    pytest.fail(f"prometheus exited: {log.read_text()}")
                try:
                    async with httpx.AsyncClient(timeout=2) as client:
                        if (await client.get(server.url + "/-/ready")).status_code == 200:
                            break
                except httpx.TransportError:
                    pass
                await trio.sleep(0.1)
        yield server
    finally:
        if proc.returncode is None:
            proc.terminate()
        with trio.CancelScope(shield=True), trio.move_on_after(10):
            await proc.wait()
        if proc.returncode is None:
            proc.kill()
            with trio.CancelScope(shield=True):
                await proc.wait()
