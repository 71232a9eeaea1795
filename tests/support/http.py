"""A worker's HTTP endpoints from the outside, as a probe or Prometheus sees them: one GET, a
metric's value, and waiting for ``/ready``, for any answer, or for a metric to reach a value.

Polling is the outside view a probe has: no event crosses the HTTP boundary.
"""

from __future__ import annotations

import httpx
import pytest
import trio

ENDPOINTS = ("/health", "/ready", "/metrics", "/live")


async def get(url: str, timeout_s: float = 10.0) -> httpx.Response:
    async with httpx.AsyncClient(timeout=timeout_s) as client:
        return await client.get(url)


async def answer(url: str, timeout_s: float = 5.0) -> httpx.Response | None:
    """``GET url``; None while nothing answers (not listening yet, gone, frozen)."""
    try:
        return await get(url, timeout_s)
    except httpx.TransportError:
        return None


def value_of(text: str, name: str) -> float | None:
    """The value of the unlabelled sample ``name`` in Prometheus text, if there is one."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


async def metric(url: str, name: str) -> float:
    """The worker's unlabelled metric ``name`` (``url``: its base URL); fails if not exported."""
    value = value_of((await get(url + "/metrics")).text, name)
    if value is None:
        raise AssertionError(f"{name} not exported")
    return value


async def http_bodies(url: str) -> dict[str, str]:
    """Each endpoint's status and body, as text."""
    out = {}
    async with httpx.AsyncClient(timeout=10) as client:
        for path in ENDPOINTS:
            response = await client.get(url + path)
            out[path] = f"{response.status_code} {response.text}"
    return out


async def wait_ready(url: str, timeout_s: float = 30.0) -> None:
    """Poll ``/ready`` until it says 200 (the service's own view: every connection is open);
    a worker not listening yet counts as not ready."""
    async with httpx.AsyncClient(timeout=5) as client:
        with trio.move_on_after(timeout_s):
            while True:
                try:
                    if (await client.get(url + "/ready")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await trio.sleep(0.02)
    pytest.fail(f"{url} not ready within {timeout_s}s")


async def wait_answering(url: str, timeout_s: float = 30.0) -> None:
    """Wait until the worker's HTTP server answers at all (``/live``, whatever its status)."""
    with trio.fail_after(timeout_s):
        while await answer(url + "/live") is None:  # noqa: ASYNC110
            await trio.sleep(0.05)


async def wait_metric(url: str, name: str, value: float, timeout_s: float = 30.0) -> None:
    """Poll ``/metrics`` until ``name`` reads ``value`` (the counters live in the worker)."""
    with trio.move_on_after(timeout_s):
        while await metric(url, name) != value:  # noqa: ASYNC110
            await trio.sleep(0.05)
        return
    pytest.fail(f"{name} never reached {value}: {await metric(url, name)}")
