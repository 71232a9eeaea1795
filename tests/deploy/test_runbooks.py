"""Every alert says where its runbook is (``runbook_url``), and the runbook is there: a section
of docs/operations.md, "Runbooks", that says what the alert means, what to check and what to do.
"""

from __future__ import annotations

import re
import tomllib

from tests.deploy.common import ROOT, alert_rules, manifests

OPERATIONS = ROOT / "docs" / "operations.md"
PARTS = ("**What it means.**", "**What to check.**", "**What to do.**")


def repository() -> str:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    url: str = pyproject["project"]["urls"]["Repository"]
    return url


def slug(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def runbooks() -> dict[str, str]:
    """The sections under "## Runbooks", by anchor."""
    text = OPERATIONS.read_text(encoding="utf-8")
    start = text.index("\n## Runbooks\n")
    end = text.find("\n## ", start + 1)
    part = text[start : end if end > 0 else len(text)]
    sections: dict[str, str] = {}
    for chunk in re.split(r"\n### ", part)[1:]:
        heading, _, body = chunk.partition("\n")
        sections[slug(heading)] = body
    return sections


def test_every_alert_links_to_its_runbook_which_says_what_to_do() -> None:
    sections = runbooks()
    base = f"{repository()}/blob/main/docs/operations.md#"
    for rule in alert_rules():
        url = rule["annotations"].get("runbook_url", "")
        assert url.startswith(base), (rule["alert"], url)
        anchor = url.removeprefix(base)
        assert anchor == slug(rule["alert"]), (rule["alert"], anchor)
        assert anchor in sections, f"docs/operations.md has no runbook #{anchor}"
        for part in PARTS:
            assert part in sections[anchor], f"#{anchor} lacks {part}"


def test_every_runbook_belongs_to_a_shipped_alert() -> None:
    assert set(runbooks()) == {slug(rule["alert"]) for rule in alert_rules()}


def test_the_memory_alert_is_three_quarters_of_the_shipped_limit() -> None:
    (rule,) = [r for r in alert_rules() if r["alert"] == "TrioWorkerMemoryHigh"]
    (container,) = manifests()["Deployment"]["spec"]["template"]["spec"]["containers"]
    limit = container["resources"]["limits"]["memory"]
    assert limit.endswith("Mi")
    threshold = int(limit.removesuffix("Mi")) * 3 // 4
    assert f"process_resident_memory_bytes > {threshold} * 1024 * 1024" in rule["expr"]
