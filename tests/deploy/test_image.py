"""The container image (the Dockerfile) and requirements.lock, which it installs."""

from __future__ import annotations

import importlib.metadata
import json
import re
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy.common import ROOT, dockerfile_stages

LOCK = ROOT / "requirements.lock"


def test_dockerfile_is_multi_stage_non_root_and_execs_the_worker() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2
    final = dict(stages[-1])  # the last of each instruction wins, as in Docker
    assert "-slim" in final["FROM"]
    user = final["USER"].split(":")[0]
    assert user not in ("root", "0")
    # Exec form (a JSON list): the worker is PID 1 and receives SIGTERM itself.
    assert json.loads(final["ENTRYPOINT"]) == ["trio-worker"]
    assert json.loads(final["CMD"]) == ["run"]
    # /live: a container health check must not fail (and get the container restarted) because a
    # store is down.
    assert "/live'" in final["HEALTHCHECK"]
    assert "/health" not in final["HEALTHCHECK"]
    assert final.get("STOPSIGNAL", "SIGTERM") == "SIGTERM"
    copied = [args for instruction, args in stages[-1] if instruction == "COPY"]
    assert copied
    assert all(a.startswith("--from=") for a in copied), "the runtime stage copies only builds"


def test_the_image_installs_the_locked_dependencies_then_the_package_alone() -> None:
    build = dockerfile_stages()[0]
    copies = [args for instruction, args in build if instruction == "COPY"]
    runs = [args for instruction, args in build if instruction == "RUN"]
    assert any(args.split()[0] == "requirements.lock" for args in copies)
    (from_lock,) = [run for run in runs if "-r requirements.lock" in run]
    assert "--require-hashes" in from_lock.split()
    (package,) = [run for run in runs if re.search(r"pip install [^&]* \.( |$)", run)]
    # Nothing unpinned: no dependency resolution, no isolated build environment from the index.
    assert {"--no-deps", "--no-build-isolation"} <= set(package.split())
    # The lock is in the build context.
    assert "!requirements.lock" in (ROOT / ".dockerignore").read_text(encoding="utf-8").split()


def locked_pins() -> dict[str, tuple[str, list[str]]]:
    """requirements.lock as {canonical name: (version, hashes)}."""
    pins: dict[str, tuple[str, list[str]]] = {}
    text = LOCK.read_text(encoding="utf-8").replace("\\\n", " ")
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement, *options = line.split(";")[0].split()
        name, _, version = requirement.partition("==")
        assert version, f"not pinned: {line}"
        hashes = [o.removeprefix("--hash=") for o in options if o.startswith("--hash=")]
        pins[canonicalize_name(name)] = (version, hashes)
    return pins


def test_the_lock_pins_every_runtime_dependency_for_the_images_python() -> None:
    """requirements.lock (`just lock`) covers pyproject.toml, with hashes, for the image."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    pins = locked_pins()
    needed = [*pyproject["project"]["dependencies"], *pyproject["build-system"]["requires"]]
    for entry in needed:
        requirement = Requirement(entry)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is not in requirements.lock: run `just lock`"
        version, _ = pins[name]
        assert requirement.specifier.contains(version, prereleases=True), (entry, version)
        # An extra's packages (redis[hiredis] -> hiredis), from the dependency's own metadata.
        for extra in requirement.extras:
            for dependency in importlib.metadata.requires(requirement.name) or []:
                brought = Requirement(dependency)
                marker = brought.marker
                if (
                    marker
                    and marker.evaluate({"extra": extra})
                    and not marker.evaluate({"extra": ""})
                ):
                    assert canonicalize_name(brought.name) in pins, f"{entry}: {brought.name}"
    assert [name for name, (_, hashes) in pins.items() if not hashes] == []
    # Resolved for the Python the image runs, which `just lock` reads from the Dockerfile.
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    (python_version,) = re.findall(r"^ARG PYTHON_VERSION=(\S+)$", dockerfile, re.MULTILINE)
    assert f"(Python {python_version} on Linux" in LOCK.read_text(encoding="utf-8")
