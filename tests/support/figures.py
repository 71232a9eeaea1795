"""Figures a test measured (e.g. a Sentinel failover's), printed at the end of the run by the
``pytest_terminal_summary`` hook of the suite that collects them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

FIGURES: list[tuple[str, dict[str, Any]]] = []


def write_figures(write_line: Callable[[str], object]) -> None:
    for what, figures in FIGURES:
        shown = " ".join(
            f"{k}={v:.1f}s" if isinstance(v, float) else f"{k}={v}" for k, v in figures.items()
        )
        write_line(f"{what}: {shown}")
