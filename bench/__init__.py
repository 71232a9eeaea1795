"""``just bench``: the worker's drain rate, latency and memory, beside MariaDB's own ceiling.

Everything is measured in one run, on this machine, against the local Redis and MariaDB, so the
ratios (drain / ceiling, drain / one at a time) hold even when the absolute numbers move with the
machine's load. The worker under test is the real one (``python -m trio_worker run``, a
subprocess with default settings unless a stage says otherwise); only the baselines are small
loops here. See docs/performance.md. Entry points: ``bench/run.py`` (``just bench``) or
``python -m bench``; ``just bench --help`` lists the options.

Modules, by concern:

- ``common``: names, paths, console output, percentiles;
- ``stores``: the two stores, reset and cleanup, the backlog, the server processes;
- ``worker``: the worker as a subprocess (start, ``/ready``, memory, CPU, stop);
- ``watcher``: how far the worker got, read cheaply from MariaDB;
- ``baselines``: MariaDB's own ceiling and the one-at-a-time design the worker replaces, built
  here, not from the worker;
- ``drain``: a backlog drained by a fresh worker, with its CPU, memory and the servers' CPU;
- ``latency``: push→commit at offered rates, including the first seconds after ``/ready``;
- ``sweep``: drain and latency for each ``BATCH_SIZE``;
- ``reference``: a fixed Python loop timed in CPU seconds before each drain: machine speed;
- ``report``, ``plot``: verdicts, the printed table, the figure;
- ``profiling`` (``--profile``): py-spy attached to a drain, its stacks summarised by concern;
- ``galera`` (``--galera``): the drains on a private Galera cluster behind HAProxy;
- ``fastpath`` (``--fast-path-pairs``): drains with trio-asyncio's fast path on and off;
- ``main``: the command line and the order of the stages.
"""
