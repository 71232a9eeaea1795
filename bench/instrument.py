"""Run the worker with recorders attached: ``python -m bench.instrument run``.

The same command line as ``python -m trio_worker``; the worker's code is not touched. Each
recorder is switched on by an environment variable naming the JSON file it writes at exit:

- ``BENCH_HOPS_OUT``: every Trio→asyncio hop, as ``[CLOCK_MONOTONIC ns, callee]``.
  The worker's one hop, ``bridge.aio``, looks up at each call the function that wraps the call
  (``bridge._call``; ``trio_asyncio.aio_as_trio`` before ``loop.start``): that is wrapped, so
  all are seen. Appending a tuple costs well under a microsecond per hop. Also
  the time of every asyncio callback run on trio-asyncio's loop (``asyncio.Handle._run``) and of
  every Trio task step (a Trio instrument, added by wrapping ``trio.run``), to count the event
  loops' work per batch; these two slow the worker down a little, so no CPU figure comes from
  such a run.
- ``BENCH_CPU_PROFILE_OUT``: a sampling profiler driven by CPU time, not wall time:
  ``ITIMER_PROF`` sends SIGPROF after every ``BENCH_CPU_PROFILE_US`` (default 1000) of the
  process's user+system CPU, and the handler notes the interrupted Python stack and the time.
  A sample therefore stands for CPU spent, never for time waiting for a core (py-spy counts a
  thread in state R, runnable but not running, as busy). Time in C code (orjson, hiredis, the
  socket send in the kernel, asyncmy's Cython) is charged to the Python frame that called it.
  Written as ``[[ns, stack_index], ...]`` plus the stacks (root first, ``func (file)``).

The CPU figures of ``python -m bench.profile_worker cpu`` come from plain runs, not from this
wrapper. It imports nothing from bench, so it can run from any checkout.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import runpy
import signal
import sys
import time
from types import CodeType, FrameType
from typing import Any

import trio
import trio_asyncio

_original = trio_asyncio.aio_as_trio
_hops: list[tuple[int, str]] = []
_handles: list[int] = []
_steps: list[int] = []
_step_tasks: list[int] = []  # per step, the index of its task's name in _task_names
_task_names: dict[str, int] = {}

_labels: dict[CodeType, str] = {}
_stacks: dict[tuple[str, ...], int] = {}
_samples: list[tuple[int, int]] = []


def callee(proc: Any) -> str:
    """A readable name: the function's qualname, or a Lua script's first line."""
    script = getattr(proc, "script", None)
    if script is not None:  # a redis-py Script object: name it by its first line of Lua
        text = script.decode() if isinstance(script, bytes) else str(script)
        first = next((line.strip() for line in text.splitlines() if line.strip()), "?")
        return f"Script[{first}]"
    name = getattr(proc, "__qualname__", None)
    return str(name) if name else type(proc).__qualname__


def recording_aio_as_trio(proc: Any, *, loop: Any = None) -> Any:
    _hops.append((time.monotonic_ns(), callee(proc)))
    return _original(proc, loop=loop)


def record_hops() -> None:
    trio_asyncio.aio_as_trio = recording_aio_as_trio
    try:
        from trio_worker import bridge  # the checkout's own worker
    except ImportError:
        return
    call = getattr(bridge, "_call", None)
    if call is not None:

        def recording_call(fn: Any, args: Any, kwargs: Any) -> Any:
            _hops.append((time.monotonic_ns(), callee(fn)))
            return call(fn, args, kwargs)

        bridge._call = recording_call


def count_loop_work() -> None:
    """Note the time of each asyncio callback and each Trio task step."""
    original_run = asyncio.Handle._run

    def run_handle(self: asyncio.Handle) -> None:
        _handles.append(time.monotonic_ns())
        original_run(self)

    asyncio.Handle._run = run_handle  # type: ignore[method-assign]

    class Steps(trio.abc.Instrument):
        def before_task_step(self, task: trio.lowlevel.Task) -> None:
            _steps.append(time.monotonic_ns())
            _step_tasks.append(_task_names.setdefault(task.name, len(_task_names)))

    original_trio_run = trio.run

    def run_with_steps(*args: Any, **kwargs: Any) -> Any:
        kwargs["instruments"] = (*kwargs.get("instruments", ()), Steps())
        return original_trio_run(*args, **kwargs)

    trio.run = run_with_steps  # type: ignore[assignment]


def _label(code: CodeType) -> str:
    label = _labels.get(code)
    if label is None:
        path = code.co_filename
        for marker in ("site-packages/", "lib/python3."):
            if marker in path:
                path = path.split(marker, 1)[1]
                if marker == "lib/python3.":
                    path = path.split("/", 1)[1] if "/" in path else path
                break
        else:
            path = path.rsplit("/trio_worker/", 1)[-1]
            if "trio_worker" in code.co_filename:
                path = "trio_worker/" + path
        label = _labels[code] = f"{code.co_qualname} ({path})"
    return label


def _on_sigprof(signum: int, frame: FrameType | None) -> None:
    stack: list[str] = []
    while frame is not None:
        stack.append(_label(frame.f_code))
        frame = frame.f_back
    key = tuple(reversed(stack))
    index = _stacks.get(key)
    if index is None:
        index = _stacks[key] = len(_stacks)
    _samples.append((time.monotonic_ns(), index))


def _dump() -> None:
    signal.setitimer(signal.ITIMER_PROF, 0)
    if out := os.environ.get("BENCH_HOPS_OUT"):
        with open(out, "w") as f:
            names = sorted(_task_names, key=_task_names.__getitem__)
            json.dump(
                {
                    "hops": _hops,
                    "asyncio_handles": _handles,
                    "trio_steps": _steps,
                    "trio_step_tasks": [names[i] for i in _step_tasks],
                },
                f,
            )
    if out := os.environ.get("BENCH_CPU_PROFILE_OUT"):
        stacks = [";".join(s) for s, _ in sorted(_stacks.items(), key=lambda kv: kv[1])]
        with open(out, "w") as f:
            json.dump({"stacks": stacks, "samples": _samples}, f)


if __name__ == "__main__":
    if os.environ.get("BENCH_HOPS_OUT"):
        record_hops()
        count_loop_work()
    if os.environ.get("BENCH_CPU_PROFILE_OUT"):
        interval = int(os.environ.get("BENCH_CPU_PROFILE_US", "1000")) / 1e6
        signal.signal(signal.SIGPROF, _on_sigprof)
        signal.setitimer(signal.ITIMER_PROF, interval, interval)
    atexit.register(_dump)
    sys.argv = ["trio_worker", *sys.argv[1:]]
    runpy.run_module("trio_worker", run_name="__main__", alter_sys=True)
