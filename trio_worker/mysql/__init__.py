"""The MySQL side.

- ``codes``: the server's error codes by name, and the error boundary that maps them;
- ``sql``: the SQL text the worker builds (session settings, quoting, statements);
- ``connection``: one connection's lifecycle, every call through the boundary;
- ``schema``: the tables, created where missing;
- ``ledger``: committing a batch exactly once, the row-by-row fallback, pruning.
"""
