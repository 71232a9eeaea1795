"""trio-worker: moves votes from a Redis list into MySQL, exactly once, in batches.

The version is the package's metadata (``trio_worker.version``), declared in pyproject.toml."""
