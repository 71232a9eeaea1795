"""pytest plugin: every loop ``trio_asyncio.open_loop`` builds is a ``FastLoop``, for the run.

``just test-loop`` runs trio-asyncio's own test suite with this plugin (``-p fast_loops``) and
without it, and compares the outcomes test for test. For the session, trio-asyncio's
``open_loop`` builds ``FastLoop``s from the start (its module's ``TrioEventLoop`` name points at
a counting subclass); the stock class is restored at the end.

The run must show that the fast path was under test: at least one ``FastLoop``, one callback
queued to run inline (the fast path proper, not only bursts), and a ``FastLoop`` in every test
that used trio-asyncio's ``loop`` fixture and passed. What was seen goes to the terminal and,
with ``--fast-loops-report PATH``, to a JSON file the comparison reads. Loops trio-asyncio
makes outside Trio (``SyncTrioEventLoop``, which CPython's asyncio tests use) are not
``FastLoop``s: the worker never runs one.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest
import trio_asyncio
import trio_asyncio._loop as trio_asyncio_loop

from trio_worker.loop import VERIFIED, FastLoop

_stock = trio_asyncio_loop.TrioEventLoop
_current: list[str] = [""]  # the node id of the test running now
_loops: Counter[str] = Counter()  # FastLoops built, by test
_inline: Counter[str] = Counter()  # callbacks queued to run inline, by test
_missed: list[str] = []  # tests that used the ``loop`` fixture and passed with no FastLoop


class CountedFastLoop(FastLoop):
    """``FastLoop``, counting itself and the callbacks queued to run inline."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _loops[_current[0]] += 1

    def _queue_handle(self, handle: asyncio.Handle) -> Any:
        if self._inline is not None and type(handle) is asyncio.Handle:
            _inline[_current[0]] += 1
        return super()._queue_handle(handle)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--fast-loops-report",
        metavar="PATH",
        default=None,
        help="write the FastLoops built and callbacks queued inline, by test, as JSON",
    )


def pytest_configure(config: pytest.Config) -> None:
    trio_asyncio_loop.TrioEventLoop = CountedFastLoop


def pytest_unconfigure(config: pytest.Config) -> None:
    trio_asyncio_loop.TrioEventLoop = _stock


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, object, object]:
    _current[0] = item.nodeid
    try:
        return (yield)
    finally:
        _current[0] = ""


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    used_loop_fixture = "loop" in getattr(item, "fixturenames", ())
    if call.when == "call" and report.passed and used_loop_fixture and not _loops[item.nodeid]:
        _missed.append(item.nodeid)
    return report


def _part(nodeid: str) -> str:
    """Which part of trio-asyncio's suite a test is in."""
    if "/test_asyncio/" in nodeid:
        return "tests/python (CPython's test_asyncio)"
    path = nodeid.split("::")[0]
    return path.rsplit("/", 1)[0] if path.count("/") > 1 else "tests/test_*.py"


def _problems() -> list[str]:
    problems = []
    if not _loops:
        problems.append("no FastLoop was built: the fast path was not under test")
    elif not _inline:
        problems.append("no callback was queued inline: FastLoop's fast path was never taken")
    problems += [f"{nodeid} used the loop fixture but ran no FastLoop" for nodeid in _missed]
    return problems


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if not config.option.collectonly:
        write = terminalreporter.write_line
        terminalreporter.section("FastLoop")
        verified = ", ".join(sorted(VERIFIED))
        write(f"trio-asyncio {trio_asyncio.__version__}; loop.VERIFIED: {verified}")
        tests: Counter[str] = Counter()
        loops: Counter[str] = Counter()
        inline: Counter[str] = Counter()
        for nodeid, n in _loops.items():
            tests[_part(nodeid)] += 1
            loops[_part(nodeid)] += n
            inline[_part(nodeid)] += _inline[nodeid]
        for part in sorted(tests):
            write(
                f"{part}: {loops[part]} FastLoops in {tests[part]} tests, "
                f"{inline[part]} callbacks queued inline"
            )
        for problem in _problems():
            write(f"FAST PATH NOT UNDER TEST: {problem}", red=True, bold=True)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    path = session.config.getoption("fast_loops_report")
    if path and not session.config.option.collectonly:
        report = {
            "trio_asyncio": trio_asyncio.__version__,
            "loops": dict(_loops),
            "inline": dict(_inline),
            "problems": _problems(),
        }
        Path(path).write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
