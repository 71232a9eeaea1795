"""pytest plugin: ``Node._nodeid`` as pytest 8 had it, for trio-asyncio's own conftest.

trio-asyncio's ``tests/conftest.py`` maps its ``tests/python`` directory onto CPython's
``test.test_asyncio`` and renames the collected nodes by assigning ``node._nodeid``; its
``xfail``/``skip`` marks (tests that hang or fail by design) are then found by those names.
pytest 9 keeps a node's id in ``_id`` (a structured ``NodeId``), so that conftest fails at
collection. This property reads and writes the id the way pytest 8 did.
"""

from __future__ import annotations

from _pytest.nodeid import coerce_node_id
from _pytest.nodes import Node


def _get(node: Node) -> str:
    return node.nodeid


def _set(node: Node, nodeid: str) -> None:
    node._id = coerce_node_id(nodeid)


# pytest 8 and older have _nodeid itself; a pytest that keeps ids elsewhere again needs a look.
if not hasattr(Node, "_nodeid") and hasattr(Node, "_id"):
    Node._nodeid = property(_get, _set)  # type: ignore[attr-defined]
