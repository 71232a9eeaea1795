"""``python -m trio_worker``: the same command line as ``trio-worker``."""

import sys

from trio_worker.cli import main

sys.exit(main())
