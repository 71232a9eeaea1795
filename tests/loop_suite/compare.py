"""``just test-loop``'s verdict: trio-asyncio's suite ended alike on the stock loop and on
FastLoops, test for test (a test run with FastLoops only must pass), and the FastLoop run had
the fast path under test.

    python compare.py STOCK.xml FAST.xml FAST_LOOPS.json

The two JUnit XML reports are pytest's (``--junitxml``); the JSON is ``fast_loops``'s. Prints
each run's counts and the tests that fail on both loops (the stock loop's own failures here,
not FastLoop's doing, but reported), then every test whose outcome differs. Exits 1 on any
difference or when the fast path was not under test.
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ElementTree
from collections import Counter
from pathlib import Path

OUTCOMES = ("passed", "failed", "error", "skipped", "xfailed")


def outcomes(junit_xml: Path) -> dict[str, str]:
    """Each test's outcome in a JUnit XML report, by ``classname::name``."""
    found: dict[str, str] = {}
    for case in ElementTree.parse(junit_xml).getroot().iter("testcase"):
        test = f"{case.get('classname')}::{case.get('name')}"
        tags = {child.tag: child for child in case}
        if "failure" in tags:
            outcome = "failed"
        elif "error" in tags:
            outcome = "error"
        elif "skipped" in tags:
            xfail = tags["skipped"].get("type") == "pytest.xfail"
            outcome = "xfailed" if xfail else "skipped"
        else:
            outcome = "passed"
        if test in found:  # a teardown error reported beside the test's own outcome
            outcome = f"{found[test]}+{outcome}"
        found[test] = outcome
    return found


def counts(run: dict[str, str]) -> str:
    tally = Counter(outcome for outcome in run.values())
    shown = [f"{tally.pop(name)} {name}" for name in OUTCOMES if name in tally]
    shown += [f"{n} {name}" for name, n in sorted(tally.items())]
    return ", ".join(shown) or "no tests"


def main(stock_xml: str, fast_xml: str, fast_loops_json: str) -> int:
    stock, fast = outcomes(Path(stock_xml)), outcomes(Path(fast_xml))
    print(f"stock loop: {counts(stock)}")
    print(f"FastLoop:   {counts(fast)}")
    for test, outcome in sorted(stock.items()):
        if outcome not in ("passed", "skipped", "xfailed") and fast.get(test) == outcome:
            print(f"  {outcome} on both loops (the stock loop's own, here): {test}")
    differ = sorted(
        (test, stock.get(test, "not run"), fast.get(test, "not run"))
        for test in stock.keys() | fast.keys()
        if stock.get(test) != fast.get(test)
        # Run with FastLoops only (tests/python: a loop FastLoop does not replace): it must pass.
        and not (test not in stock and fast[test] in ("passed", "skipped", "xfailed"))
    )
    for test, on_stock, on_fast in differ:
        print(f"  DIFFERS: {test}: {on_stock} on the stock loop, {on_fast} on FastLoop")
    report = json.loads(Path(fast_loops_json).read_text())
    problems: list[str] = report["problems"]
    for problem in problems:
        print(f"  FAST PATH NOT UNDER TEST: {problem}")
    loops = sum(report["loops"].values())
    inline = sum(report["inline"].values())
    tests = len(report["loops"])
    print(f"FastLoop run: {loops} FastLoops in {tests} tests, {inline} callbacks queued inline")
    if differ or problems:
        print(f"test-loop: FAILED: {len(differ)} tests end differently with FastLoop")
        return 1
    print(f"test-loop: trio-asyncio {report['trio_asyncio']}'s suite ends alike on both loops")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
