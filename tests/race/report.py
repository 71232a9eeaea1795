"""What one race run did and what the checker found; the summary table over every run."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from tests.race import resources
from tests.race.kinds import NAMES


@dataclass
class Report:
    seed: int
    planned_s: float = 0.0  # the load-and-faults phase asked for (minimums follow it)
    duration_s: float = 0.0
    votes: int = 0
    malformed: int = 0
    oversized: int = 0
    stored: int = 0
    lost: int = 0
    duplicated: int = 0
    quarantined: int = 0  # not stored, found in a stale_batch dead letter
    stale_for_stored: int = 0  # stale_batch letters of votes that were stored
    dead_lettered: int = 0
    dead_wrong: int = 0
    wrong_values: int = 0  # stored once, but with another vote or timestamp
    uncertain_pushes: int = 0
    uncertain_votes: int = 0
    # How far a vote without a timestamp is stored before / after its row's created_at, at most.
    unstamped_early_s: float = 0.0
    unstamped_late_s: float = 0.0
    quotas: dict[str, int] = field(default_factory=dict)
    pattern_quotas: dict[str, int] = field(default_factory=dict)
    faults: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    patterns: Counter[str] = field(default_factory=Counter)
    details: Counter[str] = field(default_factory=Counter)
    schedule: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)  # each wrong vote or letter, first first
    resources: list[resources.Series] = field(default_factory=list)  # per worker process
    started: float = field(default_factory=time.monotonic)
    started_wall: float = field(default_factory=time.time)  # the same moment, on the wall clock

    def note(self, text: str) -> None:
        self.schedule.append(f"{time.monotonic() - self.started:7.2f}s {text}")

    def problem(self, text: str) -> None:
        self.problems.append(text)
        self.note(f"PROBLEM: {text}")

    def failed(self) -> bool:
        return bool(
            self.problems
            or self.wrong
            or self.lost
            or self.duplicated
            or self.dead_wrong
            or self.wrong_values
        )

    def line(self) -> str:
        return (
            f"seed={self.seed} votes={self.votes} malformed={self.malformed} "
            f"oversized={self.oversized} stored={self.stored} lost={self.lost} "
            f"duplicated={self.duplicated} quarantined={self.quarantined} "
            f"dead_lettered={self.dead_lettered} uncertain={self.uncertain_votes} "
            f"faults={sum(self.faults.values())} duration={self.duration_s:.0f}s"
        )

    def at(self, wall: float) -> str:
        """A wall-clock moment as the schedule shows it: seconds since the run started."""
        return f"{wall - self.started_wall:+.1f}s"

    def explain(self) -> str:
        # The first few of each kind of wrong (lost, duplicated, the rest): their causes differ.
        groups: dict[str, list[str]] = {"lost": [], "duplicated": [], "wrong": []}
        for w in self.wrong:
            kind = w.split(":", 1)[0]
            groups[kind if kind in groups else "wrong"].append(w)
        wrong = [
            f"{kind} ({len(items)} in all): {w}"
            for kind, items in groups.items()
            for w in items[:3]
        ]
        return (
            f"seed {self.seed} (replay: --stress-seed {self.seed})\n{self.line()}\nproblems:\n  "
            + "\n  ".join([*self.problems, *wrong])
            + "\nfault schedule:\n  "
            + "\n  ".join(self.schedule)
        )


REPORTS: list[Report] = []


def shortfalls(reports: Iterable[Report]) -> list[str]:
    """Each kind that happened fewer times than the runs' summed minimums require."""
    need: Counter[str] = Counter()
    got: Counter[str] = Counter()
    need_caught: Counter[str] = Counter()
    caught: Counter[str] = Counter()
    for r in reports:
        need.update(r.quotas)
        got.update(r.faults)
        need_caught.update(r.pattern_quotas)
        caught.update(r.patterns)
    return [
        f"{kind}: {got[kind]} of at least {need[kind]}" for kind in NAMES if got[kind] < need[kind]
    ] + [
        f"requests matching {p!r} caught {caught[p]} times of at least {n}"
        for p, n in sorted(need_caught.items())
        if caught[p] < n
    ]


def summary(reports: list[Report], write: Callable[[str], object]) -> None:
    """The runs, the totals, and each kind with its count and minimum, as markdown tables."""
    for r in reports:
        write(r.line())
    total = sum

    def col(name: str) -> int:
        return total(getattr(r, name) for r in reports)

    write("")
    write(
        "| votes | malformed | oversized | stored | lost | duplicated | quarantined "
        "| wrong values | dead-lettered | uncertain | duration |"
    )
    write("|---|---|---|---|---|---|---|---|---|---|---|")
    write(
        f"| {col('votes')} | {col('malformed')} | {col('oversized')} | {col('stored')} "
        f"| {col('lost')} | {col('duplicated')} | {col('quarantined')} | {col('wrong_values')} "
        f"| {col('dead_lettered')} | {col('uncertain_votes')} "
        f"| {total(r.duration_s for r in reports):.0f} s |"
    )
    faults: Counter[str] = Counter()
    skipped: Counter[str] = Counter()
    need: Counter[str] = Counter()
    details: Counter[str] = Counter()
    patterns: Counter[str] = Counter()
    need_caught: Counter[str] = Counter()
    for r in reports:
        faults.update(r.faults)
        skipped.update(r.skipped)
        need.update(r.quotas)
        details.update(r.details)
        patterns.update(r.patterns)
        need_caught.update(r.pattern_quotas)
    write("")
    write("| kind | injected | minimum | not injected (no moment found) |")
    write("|---|---|---|---|")
    for kind in NAMES:
        write(f"| {kind} | {faults[kind]} | {need[kind]} | {skipped[kind]} |")
    write("")
    write(
        "requests the proxies caught (minimum): "
        + ", ".join(
            f"{p} {patterns[p]} ({need_caught[p]})" for p in sorted({*patterns, *need_caught})
        )
    )
    for what, n in sorted(details.items()):
        write(f"{what}: {n}")
    write(
        "votes without a timestamp, stored at most "
        f"{max(r.unstamped_early_s for r in reports):.0f} s before the server's created_at "
        f"(commit delay) and {max(r.unstamped_late_s for r in reports):.0f} s after it"
    )
    for r in reports:
        if r.resources:
            write("")
            write(
                f"seed {r.seed}: each worker process's memory and open file descriptors, sampled "
                f"every {resources.SAMPLE_S:.0f} s (a restarted worker: a new process)"
            )
            for line in resources.lines(r.resources):
                write(line)
