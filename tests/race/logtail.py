"""What worker logs said after a moment: faults mark the logs' sizes, then read what came after."""

from __future__ import annotations

from pathlib import Path

Marks = dict[Path, int]


def mark(paths: list[Path]) -> Marks:
    """Each log's size now (a log not yet written: 0)."""
    return {p: p.stat().st_size if p.exists() else 0 for p in paths}


def since(marks: Marks, paths: list[Path] | None = None) -> list[str]:
    """The lines written to ``paths`` (default: the marked logs) after ``mark``: all of a log
    that was not marked (it came since)."""
    lines: list[str] = []
    for path in marks if paths is None else paths:
        if not path.exists():
            continue
        with path.open("rb") as f:
            f.seek(marks.get(path, 0))
            lines += f.read().decode(errors="replace").splitlines()
    return lines


def worker_logs(logs: Path) -> list[Path]:
    """Every worker's log: the processes' (one per worker id, twins apart) and in-process ones'."""
    return sorted(logs.glob("*.log"))
