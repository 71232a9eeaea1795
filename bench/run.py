"""``just bench``: runs ``bench.main`` (see bench/__init__.py and docs/performance.md)."""

import sys
from pathlib import Path

# Run as a script, Python puts bench/ itself first on the path; the package is imported from
# the repository root instead, so that its modules never shadow anything else's.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench.main import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
