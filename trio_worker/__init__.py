"""trio-worker: moves votes from a Redis list into MySQL, exactly once, in batches."""

__version__ = "0.1.0"
