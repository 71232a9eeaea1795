"""``just bench --profile``: py-spy attached to the worker during a drain, its stacks summarised.

py-spy records (``--format raw``: collapsed stacks, root first, ``func (file);... count``); what
it does not do is say which part of the worker's work a sample belongs to. ``summarise`` does:
each sample goes to one concern (parsing, SQL text, the MySQL round trip, the trio-asyncio hop,
Trio's scheduling, ...), beside the top frames by self and by inclusive time.

py-spy counts a thread as busy while it is runnable, even waiting for a core, so on a busy
machine its shares lean towards code that runs right after a wake-up.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.common import say
from bench.worker import Worker

Stacks = Counter[tuple[str, ...]]
RATE = 250  # samples a second
ROOT_SHARE = 0.97  # frames on this share of stacks or more say nothing


def read_collapsed(path: Path) -> Stacks:
    """py-spy's raw output: one collapsed stack and its count a line."""
    stacks: Stacks = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks[tuple(stack.split(";"))] += int(count)
    return stacks


# Concerns. The work first, tried in this order against the whole stack: the first whose
# marker appears in any frame takes the sample (metrics, parsing, SQL text, the two clients).
WORK: list[tuple[str, tuple[str, ...]]] = [
    ("metrics (prometheus_client, vote counts)",
     ("prometheus_client", "trio_worker/metrics.py")),
    ("parse + checks (msgspec, orjson, messages, batch)",
     ("trio_worker/messages/", "trio_worker/pipeline/batch.py", "orjson", "msgspec")),
    ("INSERT text (sql: values_text, insert_ledger)", ("trio_worker/mysql/sql.py",)),
    # the batch's transaction coroutine: asyncmy's Cython is charged to it, and its socket sends
    ("MySQL round trip (asyncmy, socket send)",
     ("asyncmy", "commit.<locals>.transaction", "trio_worker/mysql/")),
    ("redis-py + hiredis (asyncio side)",
     ("redis/", "hiredis", "trio_worker/queue/wire.py")),
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


def concern(stack: tuple[str, ...]) -> str:
    for name, markers in WORK:
        if any(m in frame for frame in stack for m in markers):
            return name
    for frame in reversed(stack):
        for name, markers in MACHINERY:
            if any(m in frame for m in markers):
                return name
    return "other (interpreter, runpy)"


# Trio's run loop: the frames from the root down to it are the command line's, on every stack.
ENTRY = ("run (trio/_core/_run.py)", "unrolled_run (trio/_core/_run.py)")


def trim(stack: tuple[str, ...]) -> tuple[str, ...]:
    """The stack below Trio's run loop (all of it when py-spy caught only part of it)."""
    cut = max((k for k, frame in enumerate(stack) if frame in ENTRY), default=-1)
    return stack[cut + 1 :] or stack[-1:]


def summarise(stacks: Stacks, top: int = 12) -> dict[str, Any]:
    """Shares of samples: by concern, by leaf frame (self), by frame anywhere (inclusive)."""
    trimmed: Stacks = Counter()
    for stack, n in stacks.items():
        trimmed[trim(stack)] += n
    stacks = trimmed
    total = sum(stacks.values()) or 1
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    by_concern: Counter[str] = Counter()
    for stack, n in stacks.items():
        own[stack[-1]] += n
        for frame in set(stack):
            incl[frame] += n
        by_concern[concern(stack)] += n

    def ranked(c: Counter[str], k: int | None) -> list[tuple[str, float]]:
        return [(name, n / total) for name, n in c.most_common(k)]

    roots = Counter({f: n for f, n in incl.items() if n >= ROOT_SHARE * total})
    return {
        "samples": sum(stacks.values()),
        "concerns": ranked(by_concern, None),
        "self": ranked(own, top),
        "inclusive": ranked(incl - roots, top),
    }


def format_summary(s: dict[str, Any]) -> str:
    lines = [f"samples: {s['samples']:,}"]
    for key, title in (("concerns", "by concern (each sample counted once)"),
                       ("self", "self time (leaf frame)"),
                       ("inclusive", f"inclusive time (frame anywhere on the stack; frames on"
                                     f" {ROOT_SHARE:.0%}+ of stacks left out)")):  # fmt: skip
        lines += ["", title]
        lines += [f"  {share:6.1%}  {name}" for name, share in s[key]]
    return "\n".join(lines)


def py_spy_cmd(output: Path) -> list[str]:
    """py-spy from this environment, collapsed stacks without line numbers, not pausing the
    worker (``--nonblocking``)."""
    exe = shutil.which("py-spy", path=Path(sys.executable).parent) or "py-spy"
    return [exe, "record", "--rate", str(RATE), "--format", "raw", "--nolineno", "--nonblocking",
            "--output", str(output)]  # fmt: skip


@contextlib.contextmanager
def attached(cmd: list[str], worker: Worker) -> Iterator[None]:
    """Run ``cmd --pid <worker>`` for the duration; SIGINT makes py-spy write its output."""
    spy = subprocess.Popen([*cmd, "--pid", str(worker.proc.pid)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        _, err = spy.communicate(timeout=60)
        if spy.returncode not in (0, -signal.SIGINT):
            say(f"{cmd[0]}: exit {spy.returncode}: {err.decode(errors='replace')[-400:]}")
