"""Profiles of the worker: py-spy attached during a drain, and stacks summarised by concern.

Stacks are 'collapsed' text, root first (``func (file);func (file) count``), as py-spy's
``--format raw`` writes them and as ``bench.instrument``'s CPU-time sampler is saved. A caution
that matters on a busy 2-core machine: py-spy counts a thread as busy while it is runnable, even
waiting for a core, so its shares lean towards code that runs right after a wake-up or a send
that wakes MariaDB; the CPU-time sampler (``python -m bench.profile_worker cpuprof``) does not.
"""

from __future__ import annotations

import contextlib
import gzip
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from bench.common import say
from bench.worker import Worker

Stacks = Counter[tuple[str, ...]]
ROOT_SHARE = 0.97


def read_collapsed(paths: Iterable[Path]) -> Stacks:
    """Collapsed stacks, root first, summed over files (gzipped when named ``*.gz``)."""
    stacks: Stacks = Counter()
    for path in paths:
        raw = path.read_bytes()
        text_all = (gzip.decompress(raw) if path.suffix == ".gz" else raw).decode()
        for text in text_all.splitlines():
            stack, _, count = text.rpartition(" ")
            if stack and count.isdigit():
                stacks[tuple(stack.split(";"))] += int(count)
    return stacks


# Concerns. The work first, tried in this order against the whole stack: the first whose
# marker appears in any frame takes the sample (metrics, parsing, SQL text, the two clients).
WORK: list[tuple[str, tuple[str, ...]]] = [
    ("metrics (prometheus_client, vote counts)",
     ("prometheus_client", "trio_worker/metrics.py")),
    ("parse + checks (msgspec, orjson, messages, batch)",
     ("trio_worker/messages.py", "trio_worker/pipeline/batch.py", "orjson")),
    ("INSERT text (sql: values_text, insert_ledger)", ("trio_worker/mysql/sql.py",)),
    # the batch's transaction coroutine: asyncmy's Cython is charged to it, and its socket sends
    ("MySQL round trip (asyncmy, socket send)",
     ("asyncmy", "commit.<locals>.transaction", "trio_worker/mysql/")),
    ("redis-py + hiredis (asyncio side)",
     ("redis/", "hiredis", "_exchange (trio_worker/queue/boundary.py)")),
    ("HTTP (hypercorn, quart)", ("hypercorn", "quart", "h11", "werkzeug")),
    ("logging", ("logging/",)),
]  # fmt: skip
# Then the machinery that carries it, by the innermost frame that belongs to one of them: every
# stack has Trio's run loop at its root, so "anywhere" would put every other sample under Trio.
MACHINERY: list[tuple[str, tuple[str, ...]]] = [
    ("trio-asyncio hop (aio, run_aio_future, loop.start)",
     ("trio_asyncio/_adapter.py", "trio_asyncio/_util.py", "trio_worker/bridge.py",
      "start (trio_worker/loop.py)")),
    ("asyncio loop in trio-asyncio (handles, tasks, futures, socket reads)",
     ("trio_asyncio", "asyncio/", "trio_worker/loop.py")),
    ("Trio scheduling (run loop, epoll, channels, semaphores)", ("trio/", "outcome/", "sniffio")),
    ("worker's own code (pipeline, queue, store)", ("trio_worker/",)),
]  # fmt: skip
CONCERNS = WORK + MACHINERY


def concern(stack: tuple[str, ...]) -> str:
    for name, markers in WORK:
        if any(m in frame for frame in stack for m in markers):
            return name
    for frame in reversed(stack):
        for name, markers in MACHINERY:
            if any(m in frame for m in markers):
                return name
    return "other (interpreter, runpy)"


def innermost_worker_frame(stack: tuple[str, ...]) -> str:
    """The innermost worker function below the command line (the run loops have none)."""
    for frame in reversed(stack):
        if "trio_worker/" in frame:
            return frame
    return "(none: Trio's and trio-asyncio's run loops, asyncio callbacks, redis-py)"


ENTRY = "run (trio/_core/_run.py)"  # trio.run: the frames above it are the command line's


def trim(stack: tuple[str, ...]) -> tuple[str, ...]:
    """The stack below ``trio.run``: the entry frames differ between a plain worker and one run
    through ``bench.instrument`` (and between checkouts), and say nothing."""
    if ENTRY not in stack:
        return stack
    return stack[stack.index(ENTRY) + 1 :] or (ENTRY,)


def summarise(stacks: Stacks, top: int = 20) -> dict[str, Any]:
    """Shares of samples: by leaf frame (self), by frame anywhere (inclusive), by concern."""
    trimmed: Stacks = Counter()
    for stack, n in stacks.items():
        trimmed[trim(stack)] += n
    stacks = trimmed
    total = sum(stacks.values()) or 1
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    by_concern: Counter[str] = Counter()
    by_worker_frame: Counter[str] = Counter()
    for stack, n in stacks.items():
        own[stack[-1]] += n
        for frame in set(stack):
            incl[frame] += n
        by_concern[concern(stack)] += n
        by_worker_frame[innermost_worker_frame(stack)] += n

    def ranked(c: Counter[str], k: int | None) -> list[tuple[str, float]]:
        return [(name, n / total) for name, n in c.most_common(k)]

    # Frames on (almost) every stack, the entry points and trio.run, say nothing: listed apart.
    roots = Counter({f: n for f, n in incl.items() if n >= ROOT_SHARE * total})
    return {
        "samples": sum(stacks.values()),
        "concerns": ranked(by_concern, None),
        "self": ranked(own, top),
        "inclusive": ranked(incl - roots, top),
        "roots": ranked(roots, None),
        "innermost_worker_frame": ranked(by_worker_frame, top),
    }


def format_summary(s: dict[str, Any], us_per_batch: float | None = None) -> str:
    lines = [f"samples: {s['samples']:,}"]
    for key, title in (("concerns", "by concern (each sample counted once)"),
                       ("self", "self time (leaf frame)"),
                       ("inclusive", f"inclusive time (frame anywhere on the stack; frames on"
                                     f" {ROOT_SHARE:.0%}+ of stacks left out)"),
                       ("innermost_worker_frame", "innermost worker frame")):  # fmt: skip
        lines += ["", title]
        for name, share in s[key]:
            cost = f"{share * us_per_batch:7.0f} us/batch " if us_per_batch else ""
            lines.append(f"  {share:6.1%} {cost} {name}")
    return "\n".join(lines)


def py_spy() -> str:
    return shutil.which("py-spy", path=Path(sys.executable).parent) or "py-spy"


@contextlib.contextmanager
def attached(cmd: list[str], worker: Worker) -> Iterator[None]:
    """Run ``cmd --pid <worker>`` (py-spy, perf) for the duration; SIGINT makes it write."""
    spy = subprocess.Popen([*cmd, "--pid", str(worker.proc.pid)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        _, err = spy.communicate(timeout=60)
        if spy.returncode not in (0, -signal.SIGINT):
            say(f"{cmd[0]}: exit {spy.returncode}: {err.decode(errors='replace')[-400:]}")


def py_spy_cmd(output: Path, *, rate: int = 250, native: bool = False) -> list[str]:
    cmd = [py_spy(), "record", "--rate", str(rate), "--format", "raw", "--nolineno",
           "--output", str(output)]  # fmt: skip
    return [*cmd, "--native"] if native else [*cmd, "--nonblocking"]
