"""The operator's commands (``check``, ``produce``, ``stats``, ``dlq``): one short Trio program
each, one module per command group. Parsing and printing live in ``trio_worker.cli``; every
store call here goes through the stores' own boundaries, so a store that is down is one
``StoreUnavailable`` naming it, never a traceback.
"""
