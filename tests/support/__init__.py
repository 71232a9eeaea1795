"""What the tests share, one copy of each, by concept. Test modules and conftest.py files import
from here; conftest.py files hold fixtures and pytest hooks only.

- ``services``: finding the shared Redis and MariaDB; the tests' own connections to them.
- ``stores``: votes pushed as producers push them; rows, dead letters and in-flight lists read
  back; the worker's ``RedisQueue`` opened for one call at a time.
- ``workers``: a worker's environment; the real service in the test's Trio run; the worker as
  a process of its own.
- ``commands``: the operator's commands (``trio-worker <command>``) as subprocesses.
- ``http``: a worker's endpoints from the outside; waiting for ``/ready``, an answer, a metric.
- ``waiting``: polling a condition with a deadline.
- ``faults``: a fault-injecting TCP proxy to put between a worker and a store.
- ``servers``: Redis and MariaDB servers of the tests' own (TLS, ACL, Unix sockets), restartable.
- ``replicated``: Sentinel groups and Clusters built from them.
- ``old_redis``: older Redis releases (``just old-redis``).
- ``pki``: certificates for the TLS tests.
- ``credentials``: the secrets the tests give out, and where one shows that must not.
- ``figures``: figures tests measured, printed at the end of the run.
- ``leaks``: where an asyncio socket that nobody closed was opened.
"""
