"""The trio-asyncio loop redis-py and asyncmy run on, and an optional faster way to run it.

trio-asyncio runs asyncio's callbacks in a Trio task of its own, one per Trio scheduling round,
and each socket's reader in another task, which hands what the reader scheduled to the loop's
task and waits for it there. A round trip on either client is a chain of callbacks, each
scheduled by the one before (the call's first step sends, the reader reads, the reply's future
resolves, the waiting task steps, the caller is told), so every link costs a round.
``FastLoop`` brings that closer to asyncio's own loop, which runs every ready callback in one
iteration, while keeping asyncio's order (no callback runs before one scheduled earlier):

- bursts: the loop's task runs up to ``BURST`` + 1 ready callbacks per round;
- readers: when nothing else is pending, the callbacks a reader scheduled run right after it,
  in the reader's task;
- ``start``: when nothing else is pending, an asyncio call made from Trio takes its first step
  right away, in the caller's task;
- ``call_soon`` checks its callback only in debug mode, as asyncio's own loop does.

"Nothing else is pending": the loop's task waits, empty-handed, on an empty queue. Callbacks
run inline only in a Trio task of this loop (whose current loop is this one), as trio-asyncio
finds the running loop from the Trio task, and only while that task is not cancelled, as a
cancelled caller cancels its call before the call's next step. Otherwise a callback goes the
usual way. Timers and Trio-side handles always do; past ``BURST`` callbacks, the rest go to the
loop's task, in order.

``FastLoop`` overrides private methods of trio-asyncio, so it is used only where it was verified
(``VERIFIED``: trio-asyncio's own test suite and ours pass with it, ``just test-loop``) and
only when everything it reaches into is there (``unusable``); otherwise, or with
``TRIO_ASYNCIO_FAST_PATH=false``, the stock loop runs and ``open_loop`` logs one line saying
why. It is installed on one loop at a time, by ``open_loop``: importing this module changes
nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import trio
import trio_asyncio
from sniffio import thread_local as sniffio_library

T = TypeVar("T")

log = logging.getLogger("trio_worker.loop")

BURST = 32
# trio-asyncio releases FastLoop was verified on.
VERIFIED = frozenset({"0.16.0"})

# Methods of trio-asyncio's loop that FastLoop overrides or calls, and what it reads of a loop's
# callback queue (a trio memory channel) and of asyncio's and trio-asyncio's handles.
_LOOP_METHODS = (
    "_main_loop_one",
    "_queue_handle",
    "_io_task",
    "call_soon",
    "synchronize",
    "_check_closed",
    "_check_callback",
    "run_aio_coroutine",
)
_QUEUE_STATE = ("data", "receive_tasks")
_HANDLE_ATTRIBUTES = ("_run", "_cancelled")
_SCOPED_HANDLE_ATTRIBUTES = ("_scope", "_raise")


class FastLoop(trio_asyncio.TrioEventLoop):  # type: ignore[misc]
    """trio-asyncio's loop, running callbacks in fewer Trio steps (see the module docstring)."""

    # Callbacks scheduled while this loop runs some inline (``_inline_then``), or None.
    _inline: deque[asyncio.Handle] | None = None

    async def _main_loop_one(self, no_wait: bool = False) -> None:
        await super()._main_loop_one(no_wait)
        if no_wait:
            return
        for _ in range(BURST):
            try:
                await super()._main_loop_one(True)
            except trio.WouldBlock:
                return

    def call_soon(self, callback: Callable[..., object], *args: Any, **context: Any) -> Any:
        if self._debug:
            self._check_callback(callback, "call_soon")
        return self._queue_handle(asyncio.Handle(callback, args, self, **context))

    def _queue_handle(self, handle: asyncio.Handle) -> Any:
        pending = self._inline
        if pending is None or type(handle) is not asyncio.Handle:
            return super()._queue_handle(handle)
        self._check_closed()
        pending.append(handle)
        return handle

    def _inline_then(self, first: Callable[[], T]) -> tuple[T, bool]:
        """``first()``, then the callbacks it scheduled, here, if nothing else is pending.
        Returns what ``first`` returned, and whether callbacks were left to the loop's task.

        Not re-entered: a call made while callbacks run inline (one of them starting an asyncio
        call) runs ``first`` alone, its callbacks joining the ones already pending, in order.
        Nothing runs inline in a Trio task that is, or becomes, cancelled: the stock loop runs
        callbacks while the caller waits, and a caller's cancellation cancels its call there.
        """
        # The loop's queue read directly: statistics() builds an object at every call.
        queue = self._q_recv._state
        if self._inline is not None or queue.data or not queue.receive_tasks:
            return first(), True
        # trio-asyncio finds the running loop from the Trio task (its context's current_loop):
        # only a task of this loop may run its callbacks, as the loop's own task does.
        task = trio.lowlevel.current_task()
        if task.context.get(trio_asyncio.current_loop) is not self or _cancelled(task):
            return first(), True
        pending: deque[asyncio.Handle] = deque()
        self._inline = pending
        try:
            result = first()
            ran = 0
            # A caller that a callback made cancellable (a shield lifted, a scope cancelled)
            # stops here: waiting on the loop's task, it would be cancelled at once, its call
            # with it, before the call's next step.
            while pending and ran < BURST and not _cancelled(task):
                handle = pending.popleft()
                if handle._cancelled:
                    continue
                ran += 1
                library, sniffio_library.name = sniffio_library.name, "asyncio"
                try:
                    handle._run()
                finally:
                    sniffio_library.name = library
        finally:
            self._inline = None
        for handle in pending:
            super()._queue_handle(handle)
        return result, bool(pending)

    def start(self, coro: Coroutine[Any, Any, T]) -> asyncio.Future[T]:
        """An asyncio task running ``coro`` on this loop, its first step taken now if it can
        be. The caller awaits the future (``trio_asyncio.run_aio_future``)."""
        try:
            self._check_closed()
            future, _ = self._inline_then(lambda: asyncio.ensure_future(coro, loop=self))
        except BaseException:
            coro.close()  # never awaited
            raise
        return future

    async def run_aio_coroutine(self, coro: Coroutine[Any, Any, T]) -> T:
        """trio-asyncio's entry from Trio into asyncio (``aio_as_trio`` and the like), its first
        step taken at once where ``start`` can."""
        result: T = await trio_asyncio.run_aio_future(self.start(coro))
        return result

    async def _io_task(
        self, fd: int, handle: Any, wait_ready: Callable[[int], Awaitable[None]]
    ) -> None:
        # trio-asyncio's own _io_task, with the reader's callbacks run by _inline_then.
        with handle._scope:
            try:
                while not handle._cancelled:
                    try:
                        await wait_ready(fd)
                    except OSError:
                        if handle._cancelled:
                            break
                        raise
                    if handle._cancelled:
                        break
                    _, left = self._inline_then(handle._run)
                    if left:
                        await self.synchronize()
            except Exception as exc:
                handle._raise(exc)


def unusable(loop: object) -> str | None:
    """Why ``FastLoop`` can't take over ``loop``, or None if it can."""
    version = getattr(trio_asyncio, "__version__", "unknown")
    if version not in VERIFIED:
        verified = ", ".join(sorted(VERIFIED))
        return f"trio-asyncio {version} is not a release it was verified on ({verified})"
    if type(loop) is not trio_asyncio.TrioEventLoop:
        return f"the loop is a {type(loop).__qualname__}, not trio-asyncio's TrioEventLoop"
    needed = [
        *(f"TrioEventLoop.{name}" for name in _LOOP_METHODS if not hasattr(loop, name)),
        *(f"asyncio.Handle.{name}" for name in _HANDLE_ATTRIBUTES if not _handle_has(name)),
        *(
            f"ScopedHandle.{name}"
            for name in _SCOPED_HANDLE_ATTRIBUTES
            if not hasattr(_scoped_handle_type(), name)
        ),
    ]
    state = getattr(getattr(loop, "_q_recv", None), "_state", None)
    needed += [f"TrioEventLoop._q_recv._state.{n}" for n in _QUEUE_STATE if not hasattr(state, n)]
    lacks = [f"trio-asyncio {version} lacks {', '.join(needed)}"] if needed else []
    if trio_needs := _trio_lacks():
        lacks.append(f"trio {trio.__version__} lacks {', '.join(trio_needs)}")
    return "; ".join(lacks) or None


def _cancelled(task: trio.lowlevel.Task) -> bool:
    """Whether ``task``'s next checkpoint raises ``Cancelled`` (``trio.current_effective_deadline``
    says so too, but walks every enclosing scope, a few microseconds)."""
    cancelled: bool = task._cancel_status.effectively_cancelled
    return cancelled


def _trio_lacks() -> list[str]:
    """What ``FastLoop`` reads of Trio's internals and the running Trio lacks."""
    try:
        status = getattr(trio.lowlevel.current_task(), "_cancel_status", None)
    except RuntimeError:  # not in Trio: nothing to read it from
        status = None
    if hasattr(status, "effectively_cancelled"):
        return []
    return ["Task._cancel_status.effectively_cancelled"]


def _handle_has(name: str) -> bool:
    return hasattr(asyncio.Handle, name)  # a method, or a slot's descriptor


def _scoped_handle_type() -> type:
    handles = getattr(trio_asyncio, "_handles", None)
    return getattr(handles, "ScopedHandle", type(None))


@asynccontextmanager
async def open_loop(*, fast_path: bool) -> AsyncIterator[Any]:
    """trio-asyncio's loop for the duration of the block; a ``FastLoop`` when ``fast_path`` is
    on and the installed trio-asyncio allows it (else one log line says why not)."""
    async with trio_asyncio.open_loop() as loop:
        why = unusable(loop) if fast_path else "TRIO_ASYNCIO_FAST_PATH=false"
        if why is None:
            # trio-asyncio's open_loop builds its own class; this loop alone becomes a
            # FastLoop (same state, more methods) before any of our calls runs on it.
            loop.__class__ = FastLoop
        else:
            log.warning("trio-asyncio fast path off: %s; the stock loop runs", why)
        yield loop
