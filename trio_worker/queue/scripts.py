"""Every Lua script the worker and the operator commands run in Redis, in one place.

Redis runs a script atomically: no other command runs between its first and last line, so each
script below is one indivisible step of the protocol (docs/reliability.md). Each is one round
trip, and each is safe to run again after a lost reply: it checks the state it acts on.
Scripts only touch the keys they are given (``KEYS``), all under ``<queue>:`` or the queue and
dead-letter lists themselves.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Script:
    name: str
    source: str

    @property
    def sha(self) -> str:
        """The SHA1 that ``EVALSHA`` sends (what a fault proxy can match on)."""
        return hashlib.sha1(self.source.encode()).hexdigest()


TAKE = Script(
    "take",
    # KEYS: 1 queue, 2 the batch's in-flight list, 3 the registry, 4.. committed lists to drop
    # ARGV: 1 most votes to move, 2 LPOP or RPOP (the consuming end), 3 'new' or 'append'
    # Returns {votes moved, votes left in the queue}, or nil if ARGV[3] is 'append' and the
    # in-flight list is gone (another worker took the batch over: nothing is moved).
    # On its way it drops the in-flight lists of committed batches that have no dead letters
    # (see DROP), so a batch costs one Redis round trip, not two.
    """
for i = 4, #KEYS do
  redis.call('DEL', KEYS[i])
  redis.call('SREM', KEYS[3], KEYS[i])
end
if ARGV[3] == 'append' and redis.call('EXISTS', KEYS[2]) == 0 then return false end
local items = redis.call(ARGV[2], KEYS[1], tonumber(ARGV[1]))
if not items then return {{}, 0} end
redis.call('SADD', KEYS[3], KEYS[2])
redis.call('RPUSH', KEYS[2], unpack(items))
return {items, redis.call('LLEN', KEYS[1])}
""",
)

DROP = Script(
    "drop",
    # KEYS: 1 the registry, 2.. in-flight lists of committed batches with no dead letters
    # Deletes and unregisters them. A list already gone, or renamed by a takeover, is left as
    # it is.
    """
for i = 2, #KEYS do
  redis.call('DEL', KEYS[i])
  redis.call('SREM', KEYS[1], KEYS[i])
end
return 1
""",
)

FINISH = Script(
    "finish",
    # KEYS: 1 the batch's in-flight list, 2 the registry, 3 the dead-letter list
    # ARGV: the batch's dead-letter envelopes
    # Pushes the dead letters and deletes the list, only if the list still exists: once. If it
    # is gone, the batch was finished already, or taken over by a worker that will finish it.
    # Returns 1 if this call finished the batch.
    """
local done = 0
if redis.call('EXISTS', KEYS[1]) == 1 then
  for i = 1, #ARGV, 1000 do
    redis.call('RPUSH', KEYS[3], unpack(ARGV, i, math.min(i + 999, #ARGV)))
  end
  redis.call('DEL', KEYS[1])
  done = 1
end
redis.call('SREM', KEYS[2], KEYS[1])
return done
""",
)

CLAIM = Script(
    "claim",
    # KEYS: 1 a stopped worker's in-flight list, 2 its new name under the claimer, 3 the
    # registry, 4 the stopped worker's heartbeat
    # Renames the list to the claimer, only if the owner's heartbeat is gone. The new name keeps
    # the batch id, so the MySQL ledger still recognises the batch. Returns 1 if claimed, 0 if
    # the list was empty (unregistered), -1 if the owner is alive.
    """
if redis.call('EXISTS', KEYS[4]) == 1 then return -1 end
redis.call('SREM', KEYS[3], KEYS[1])
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('RENAME', KEYS[1], KEYS[2])
redis.call('SADD', KEYS[3], KEYS[2])
return 1
""",
)

REQUEUE = Script(
    "requeue",
    # KEYS: 1 the dead-letter list, 2 the queue
    # ARGV: 1 LPUSH or RPUSH (the producers' end), 2 n, 3..n+2 the n envelopes the caller read
    # at the head, n+3..2n+2 the original messages to push back
    # Moves them only if the head is still exactly what the caller read, so requeueing twice,
    # or something another operator moved meanwhile, can't happen. Returns n, or -1.
    """
local n = tonumber(ARGV[2])
local head = redis.call('LRANGE', KEYS[1], 0, n - 1)
if #head ~= n then return -1 end
for i = 1, n do if head[i] ~= ARGV[2 + i] then return -1 end end
for i = 1, n do redis.call(ARGV[1], KEYS[2], ARGV[2 + n + i]) end
redis.call('LTRIM', KEYS[1], n, -1)
return n
""",
)

PURGE = Script(
    "purge",
    # KEYS: 1 the dead-letter list. Deletes it; returns how many it held, counted in the same
    # step.
    """
local n = redis.call('LLEN', KEYS[1])
redis.call('DEL', KEYS[1])
return n
""",
)

ALL = (TAKE, DROP, FINISH, CLAIM, REQUEUE, PURGE)
