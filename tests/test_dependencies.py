"""The versions tested are the versions shipped, and what the worker relies on inside them is
there.

``requirements.lock`` is what the image installs; ``just setup`` installs the same pins. If an
upgrade (a ``pip install -U``, a new lock) changes one, these tests say which, and which private
attribute the worker would no longer find (``trio_worker.compat``, ``trio_worker.loop``).
"""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
import trio_asyncio

from trio_worker import compat
from trio_worker import loop as fast

ROOT = Path(__file__).resolve().parents[1]


def _lock() -> dict[str, str]:
    pins = re.findall(
        r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)",
        (ROOT / "requirements.lock").read_text(),
        re.MULTILINE,
    )
    return {_normal(name): version for name, version in pins}


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_runtime_dependency_is_installed_at_the_locks_version() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    build_only = {
        _normal(re.split(r"[<>=!~ \[]", r, maxsplit=1)[0])
        for r in pyproject["build-system"]["requires"]
    }
    wrong = {
        name: (metadata.version(name), version)
        for name, version in _lock().items()
        if name not in build_only and metadata.version(name) != version
    }
    assert not wrong, f"installed ≠ requirements.lock (installed, locked): {wrong}; `just setup`"


@pytest.mark.parametrize(
    "library", ["trio", "trio-asyncio", "redis", "hiredis", "asyncmy", "msgspec", "orjson"]
)
def test_the_libraries_the_worker_reaches_into_are_locked(library: str) -> None:
    assert _normal(library) in _lock()


@pytest.mark.parametrize("reliance", compat.ALL, ids=lambda r: r.name)
def test_every_private_attribute_the_worker_relies_on_is_there(reliance: compat.Reliance) -> None:
    assert reliance.check(), f"missing: {reliance.name} ({reliance.used_for})"


async def test_the_fast_path_runs_on_the_locked_trio_asyncio() -> None:
    assert trio_asyncio.__version__ in fast.VERIFIED
    async with trio_asyncio.open_loop() as loop:
        assert fast.unusable(loop) is None
