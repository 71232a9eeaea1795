"""Where an asyncio socket that nobody closed was opened.

The garbage collector finds such a socket late, in whatever test runs then, and its
``ResourceWarning`` (an error under ``-X dev`` and pytest) names only the socket. So each asyncio
socket transport notes the code that opened it (this project's frames, and the library's
below them); one collected while still open prints that note to stderr, which
pytest shows beside the warning. Tracemalloc would tell the same for every allocation, at many
times the cost.
"""

from __future__ import annotations

import sys
import traceback
from asyncio import selector_events
from typing import Any

_OURS = ("/trio_worker/", "/tests/")
LIBRARY_FRAMES = 12


def _opened_by() -> str:
    frames = traceback.extract_stack()[:-3]
    ours = [f for f in frames if any(p in f.filename for p in _OURS)]
    last = ours[-1] if ours else None
    shown = ours[-12:]
    if last is not None:  # the library calls that opened it, past our last frame
        shown += frames[frames.index(last) + 1 :][:LIBRARY_FRAMES]
    return "".join(traceback.format_list(shown))


def install() -> None:
    transport: Any = getattr(selector_events, "_SelectorTransport")  # noqa: B009 (private)
    if getattr(transport, "_leaks_installed", False):
        return
    init, delete = transport.__init__, transport.__del__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        self._opened_by = _opened_by()
        init(self, *args, **kwargs)

    def __del__(self: Any) -> None:
        if self._sock is not None:
            print(
                f"an asyncio socket was never closed (fd {self._sock_fd},"
                f" {self._extra.get('sockname')} -> {self._extra.get('peername')}), opened by\n"
                f"{getattr(self, '_opened_by', '(unknown)')}",
                file=sys.stderr,
            )
        delete(self)

    transport.__init__, transport.__del__ = __init__, __del__
    transport._leaks_installed = True
