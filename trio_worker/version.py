"""The worker's version, from one source: the installed package's metadata, which
``pyproject.toml`` declares. ``--version``, ``/health``, the start-up log line and
``trio_worker_build_info`` all read it here."""

from __future__ import annotations

from functools import cache
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as distribution_version

DISTRIBUTION = "trio-worker"


@cache
def version() -> str:
    """``0.1.0``; ``unknown`` for a source tree run without being installed."""
    try:
        return distribution_version(DISTRIBUTION)
    except PackageNotFoundError:
        return "unknown"
