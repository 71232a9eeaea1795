"""Plugins for running trio-asyncio's own test suite (from its sdist) under ``just test-loop``."""
