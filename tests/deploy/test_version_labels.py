"""The version an operator sees outside the process: the image's OCI labels (from the package
metadata, through `just image`), and the CHANGELOG that says what changed for users."""

from __future__ import annotations

import re
import tomllib

from tests.deploy.common import ROOT, dockerfile_stages
from trio_worker.version import version


def test_the_image_carries_oci_labels_from_build_arguments() -> None:
    final = dockerfile_stages()[-1]
    arguments = {args.split("=")[0] for instruction, args in final if instruction == "ARG"}
    assert {"VERSION", "REVISION", "CREATED"} <= arguments
    labels = " ".join(args for instruction, args in final if instruction == "LABEL")
    found = dict(re.findall(r'(org\.opencontainers\.image\.\w+)="([^"]*)"', labels))
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert found["org.opencontainers.image.version"] == "${VERSION}"
    assert found["org.opencontainers.image.revision"] == "${REVISION}"
    assert found["org.opencontainers.image.created"] == "${CREATED}"
    assert found["org.opencontainers.image.source"] == pyproject["project"]["urls"]["Repository"]
    assert found["org.opencontainers.image.licenses"] == "MIT"
    assert found["org.opencontainers.image.title"] == "trio-worker"
    # No version of its own: `just image` passes the package's, as `trio-worker --version`
    # prints it.
    assert version() not in (ROOT / "Dockerfile").read_text(encoding="utf-8")
    recipe = (ROOT / "justfile").read_text(encoding="utf-8").split("\nimage ", 1)[1]
    recipe = recipe.split("\n\n", 1)[0]
    assert "--build-arg VERSION=\"$({{bin}}/trio-worker --version | cut -d' ' -f2)\"" in recipe


def test_the_changelog_has_an_unreleased_section_and_the_current_version() -> None:
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    headings = re.findall(r"^## (.+)$", text, flags=re.MULTILINE)
    assert headings[0] == "Unreleased"
    assert any(h.startswith(version()) for h in headings[1:]), headings
