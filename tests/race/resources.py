"""Each worker process's memory (RSS) and open file descriptors over a run, from /proc.

Sampled every SAMPLE_S while producers and faults run, one series per process (a restart starts
a new one). Most processes live seconds (faults restart them); the steady one lives the whole
run, and its series says whether the worker leaks: a series of at least JUDGED_FROM_S must end
about where its first third peaked (RSS within 25 % and 16 MiB, descriptors within 8), or the
run fails naming it.
"""

from __future__ import annotations

import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import trio

from tests.race.workers import ProcWorker

SAMPLE_S = 10.0
JUDGED_FROM_S = 300.0
RSS_GROWTH = (1.25, 16 * 1024)  # KiB: more than 25 % and 16 MiB over the early peak
FD_GROWTH = 8


@dataclass
class Series:
    worker: str  # the fleet's name (p0, s0), across restarts
    worker_id: str
    pid: int
    steady: bool
    samples: list[tuple[float, int, int]] = field(default_factory=list)  # (s, RSS KiB, fds)

    @property
    def span_s(self) -> float:
        return self.samples[-1][0] - self.samples[0][0] if self.samples else 0.0

    def column(self, i: int) -> list[int]:
        """RSS in KiB (1) or open fds (2), sample by sample."""
        return [int(s[i]) for s in self.samples]

    def growth(self) -> list[str]:
        """What grew over the series, if it is long enough to tell (empty: flat)."""
        if self.span_s < JUDGED_FROM_S or len(self.samples) < 6:
            return []
        third = max(2, len(self.samples) // 3)
        grown = []
        for name, i, over in (("RSS", 1, _rss_over), ("open fds", 2, _fds_over)):
            values = self.column(i)
            early, late = max(values[:third]), statistics.median(values[-3:])
            if over(early, late):
                grown.append(f"{name} {_fmt(i, early)} early, {_fmt(i, late)} at the end")
        return grown


def _rss_over(early: float, late: float) -> bool:
    factor, absolute = RSS_GROWTH
    return late > early * factor and late > early + absolute


def _fds_over(early: float, late: float) -> bool:
    return late > early + FD_GROWTH


def _fmt(i: int, value: float) -> str:
    return f"{value / 1024:.1f} MiB" if i == 1 else f"{value:.0f}"


def sample(pid: int) -> tuple[int, int] | None:
    """(RSS in KiB, open file descriptors) of a live process; None if it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]), fds
    return None  # a zombie: no memory left to speak of


class Sampler:
    def __init__(self) -> None:
        self.series: list[Series] = []
        self._of: dict[trio.Process, Series] = {}

    async def run(self, procs: list[ProcWorker], started: float) -> None:
        """Sample every SAMPLE_S until cancelled."""
        while True:
            self.take(procs, started)
            await trio.sleep(SAMPLE_S)

    def take(self, procs: list[ProcWorker], started: float) -> None:
        now = trio.current_time() - started
        for w in procs:
            proc = w.proc
            if proc is None or proc.returncode is not None:
                continue
            got = sample(proc.pid)
            if got is None:
                continue
            series = self._of.get(proc)
            if series is None:
                series = self._of[proc] = Series(w.name, w.worker_id, proc.pid, w.steady)
                self.series.append(series)
            series.samples.append((now, *got))


def lines(series: list[Series]) -> list[str]:
    """A table: per worker, its processes' first / max / last RSS and open descriptors (of its
    longest-lived process), the most any of them reached, and growth."""
    out = [
        "| worker | processes | longest | RSS MiB first / max / last | open fds first / max / last "
        "| most of any process (MiB, fds) | growth |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in sorted({s.worker for s in series}, key=lambda n: (n[0] != "s", n)):
        mine = [s for s in series if s.worker == name and s.samples]
        if not mine:
            continue
        longest = max(mine, key=lambda s: (s.span_s, len(s.samples)))
        rss, fds = longest.column(1), longest.column(2)
        grown = [f"{s.worker_id} (pid {s.pid}): {'; '.join(g)}" for s in mine if (g := s.growth())]
        judged = any(s.span_s >= JUDGED_FROM_S for s in mine)
        verdict = "; ".join(grown) if grown else ("flat" if judged else "too short to judge")
        label = f"{name} (steady)" if longest.steady else name
        out.append(
            f"| {label} | {len(mine)} | {longest.span_s:.0f} s "
            f"| {rss[0] / 1024:.1f} / {max(rss) / 1024:.1f} / {rss[-1] / 1024:.1f} "
            f"| {fds[0]} / {max(fds)} / {fds[-1]} "
            f"| {max(max(s.column(1)) for s in mine) / 1024:.1f}, "
            f"{max(max(s.column(2)) for s in mine)} | {verdict} |"
        )
    return out
