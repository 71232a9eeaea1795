"""Every Lua script the worker and the operator commands run in Redis, in one place.

Redis runs a script atomically: no other command runs between its first and last line, so each
script below is one indivisible step of the protocol (docs/reliability.md). Each is one round
trip, and each is safe to run again after a lost reply: it checks the state it acts on.
Scripts only touch the keys they are given (``KEYS``): the queue, the dead-letter list, and keys
under ``<queue>:``.

Three rules run through them:

- **The lease.** A worker's heartbeat key holds a token of the process that owns that worker id
  (BEAT). Every script that takes votes (TAKE, READ of our own list, CLAIM) first checks that
  the token is still ours and returns -1 otherwise: a second live process with the same id
  (a twin) can never move a vote.
- **Size.** A vote list element longer than MAX_MESSAGE_BYTES never leaves Redis whole: TAKE
  and READ return an empty string in its place and, in a third reply element, its position,
  size and first bytes. FINISH moves such originals, byte for byte, into lists of their own.
- **Registration.** Every in-flight list that holds votes is in the registry set, whatever
  path filled or re-read it, so recovery can always find it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property


@dataclass(frozen=True)
class Script:
    name: str
    source: str

    @cached_property
    def sha(self) -> str:
        """The SHA1 that ``EVALSHA`` sends (what a fault proxy can match on)."""
        return hashlib.sha1(self.source.encode()).hexdigest()


# Shared by TAKE and READ: the reply for a list of elements, oversized ones replaced by ''
# and described in a flat list {position (0-based), size, first bytes, ...}.
_GUARD = """
local function guarded(items, max, preview)
  local large = {}
  for i = 1, #items do
    local size = #items[i]
    if size > max then
      large[#large + 1] = i - 1
      large[#large + 1] = size
      large[#large + 1] = string.sub(items[i], 1, preview)
      items[i] = ''
    end
  end
  return items, large
end
"""

TAKE = Script(
    "take",
    # KEYS: 1 queue, 2 the batch's in-flight list, 3 the registry, 4 our heartbeat,
    #       5.. in-flight lists of committed batches (no dead letters) to drop on the way
    # ARGV: 1 most votes to move, 2 LPOP or RPOP (the consuming end),
    #       3 'new' (a fresh list), 'append' (the list must exist: else it was taken over and
    #         nothing is moved) or 'waited' (BLMOVE may have moved one vote into the list just
    #         before: the reply includes what the list holds),
    #       4 our lease token, 5 MAX_MESSAGE_BYTES, 6 preview bytes,
    #       7 bytes the batch may still take (its memory bound; oversized votes count as their
    #         preview; the first vote of a batch is always taken)
    # Returns -1 if the lease is not ours (the list registered if it holds anything), nil if an
    # 'append' found the list gone, else
    # {votes, votes left in the queue, oversized, 1 if the byte bound stopped the take}.
    # Votes popped past the byte bound go back where they were, in their order.
    _GUARD
    + """
for i = 5, #KEYS do
  redis.call('DEL', KEYS[i])
  redis.call('SREM', KEYS[3], KEYS[i])
end
if redis.call('GET', KEYS[4]) ~= ARGV[4] then
  -- Not our lease: take nothing. A vote BLMOVE moved into the list just before stays where
  -- recovery finds it: a claim may have unregistered the list while it was still empty.
  if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('SADD', KEYS[3], KEYS[2]) end
  return -1
end
local max, preview, budget = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local items = {}
if ARGV[3] ~= 'new' then
  if redis.call('EXISTS', KEYS[2]) == 0 then
    if ARGV[3] == 'append' then return false end
    redis.call('SREM', KEYS[3], KEYS[2])
    return {{}, redis.call('LLEN', KEYS[1]), {}, 0}
  end
  if ARGV[3] == 'waited' then items = redis.call('LRANGE', KEYS[2], 0, -1) end
end
-- Sizes inline, not through a function per vote; the oversized pass only if one was seen.
local used, full, oversized = 0, 0, false
for i = 1, #items do
  local size = #items[i]
  if size > max then size, oversized = preview, true end
  used = used + size
end
local want = tonumber(ARGV[1]) - #items
if want > 0 and used < budget then
  local popped = redis.call(ARGV[2], KEYS[1], want)
  if popped then
    local keep, held = #popped, #items
    for i = 1, keep do
      local size = #popped[i]
      if size > max then size, oversized = preview, true end
      used = used + size
      if used > budget and held + i > 1 then
        keep, full = i - 1, 1
        break
      end
    end
    local back = ARGV[2] == 'LPOP' and 'LPUSH' or 'RPUSH'
    for i = #popped, keep + 1, -1 do
      redis.call(back, KEYS[1], popped[i])
      popped[i] = nil
    end
    if keep > 0 then redis.call('RPUSH', KEYS[2], unpack(popped, 1, keep)) end
    if held == 0 then
      items = popped
    else
      for i = 1, keep do items[held + i] = popped[i] end
    end
  end
elseif want > 0 then
  full = 1
end
if #items > 0 then redis.call('SADD', KEYS[3], KEYS[2]) end
local large = {}
if oversized then items, large = guarded(items, max, preview) end
return {items, redis.call('LLEN', KEYS[1]), large, full}
""",
)

READ = Script(
    "read",
    # KEYS: 1 one of our in-flight lists, 2 the registry, 3 our heartbeat,
    #       4 (optional) a new name for the list, under a fresh batch id
    # ARGV: 1 our lease token, 2 MAX_MESSAGE_BYTES, 3 preview bytes
    # Re-reads a list (after a lost reply, or to recover it), registering it again if it holds
    # anything: a takeover pass may have unregistered it while we were paused. Returns -1 if the
    # lease is not ours, else {votes, oversized} ({} and unregistered if the list is gone).
    # With KEYS[4], the list is read under its new name, moved there first (appended, should
    # the new name hold votes already: a repeat after a lost reply): a take still on its way
    # to the old name (sent on a connection given up on) then lands in a list of its own,
    # which recovery finds, never in the batch being committed from this read.
    _GUARD
    + """
if redis.call('GET', KEYS[3]) ~= ARGV[1] then
  -- Not our lease: read nothing, but leave a list that holds votes where recovery finds it.
  if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('SADD', KEYS[2], KEYS[1]) end
  return -1
end
local key = KEYS[1]
if KEYS[4] then
  if redis.call('EXISTS', KEYS[1]) == 1 then
    if redis.call('EXISTS', KEYS[4]) == 0 then
      redis.call('RENAME', KEYS[1], KEYS[4])
    else
      local moved = redis.call('LRANGE', KEYS[1], 0, -1)
      for i = 1, #moved, 1000 do
        redis.call('RPUSH', KEYS[4], unpack(moved, i, math.min(i + 999, #moved)))
      end
      redis.call('DEL', KEYS[1])
    end
  end
  redis.call('SREM', KEYS[2], KEYS[1])
  key = KEYS[4]
end
if redis.call('EXISTS', key) == 0 then
  redis.call('SREM', KEYS[2], key)
  return {{}, {}}
end
redis.call('SADD', KEYS[2], key)
local items = redis.call('LRANGE', key, 0, -1)
local votes, large = guarded(items, tonumber(ARGV[2]), tonumber(ARGV[3]))
return {votes, large}
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
    # KEYS: 1 the batch's in-flight list, 2 the registry, 3 the dead-letter list,
    #       4.. one list per oversized message, to hold its original
    # ARGV: 1 E, the number of envelopes, 2..E+1 the dead-letter envelopes, then the position
    #       in the in-flight list of each oversized message, in KEYS[4..] order
    # Moves the oversized originals, pushes the dead letters and deletes the list, only if the
    # list still exists: once. If it is gone, the batch was finished already, or taken over by
    # a worker that will finish it. Returns 1 if this call finished the batch.
    """
local done = 0
if redis.call('EXISTS', KEYS[1]) == 1 then
  local e = tonumber(ARGV[1])
  for k = 4, #KEYS do
    local original = redis.call('LINDEX', KEYS[1], tonumber(ARGV[e + 1 + k - 3]))
    if original then redis.call('RPUSH', KEYS[k], original) end
  end
  for i = 2, e + 1, 1000 do
    redis.call('RPUSH', KEYS[3], unpack(ARGV, i, math.min(i + 999, e + 1)))
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
    #       registry, 4 the stopped worker's heartbeat, 5 the claimer's heartbeat
    # ARGV: 1 the claimer's lease token
    # Renames the list to the claimer, only if the owner's heartbeat is gone and the claimer's
    # lease is its own. The new name keeps the batch id, so the MySQL ledger still recognises
    # the batch. Returns 1 if claimed, 0 if the list was empty (unregistered), -1 if the owner
    # is alive or the lease is not ours.
    """
if redis.call('EXISTS', KEYS[4]) == 1 then return -1 end
if redis.call('GET', KEYS[5]) ~= ARGV[1] then return -1 end
redis.call('SREM', KEYS[3], KEYS[1])
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('RENAME', KEYS[1], KEYS[2])
redis.call('SADD', KEYS[3], KEYS[2])
return 1
""",
)

BEAT = Script(
    "beat",
    # KEYS: 1 our heartbeat   ARGV: 1 our lease token, 2 the TTL in milliseconds
    # Refreshes the heartbeat if it holds our token or nothing. Returns {1, 0}, or {0, ms left}
    # while another live process holds this worker id.
    """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return {0, redis.call('PTTL', KEYS[1])} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return {1, 0}
""",
)

UNBEAT = Script(
    "unbeat",
    # KEYS: 1 our heartbeat, 2 the workers' settings   ARGV: 1 our lease token, 2 our worker id
    # Deletes the heartbeat if it is ours, so other workers take over what we leave at once, and
    # our settings with it.
    """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('HDEL', KEYS[2], ARGV[2])
end
return 1
""",
)

SAMPLE = Script(
    "sample",
    # KEYS: 1 the queue   ARGV: 1 the oldest vote's index (-1: right end, 0: left), 2 the most
    # bytes of it to decode (MAX_MESSAGE_BYTES)
    # The queue's depth and the oldest waiting vote's ``timestamp`` (as text), if it has one:
    # read inside Redis, so an oversized vote is never sent. Returns {depth, timestamp or nil}.
    """
local depth = redis.call('LLEN', KEYS[1])
if depth == 0 then return {0, false} end
local oldest = redis.call('LINDEX', KEYS[1], tonumber(ARGV[1]))
if not oldest or #oldest > tonumber(ARGV[2]) then return {depth, false} end
local ok, doc = pcall(cjson.decode, oldest)
if not ok or type(doc) ~= 'table' then return {depth, false} end
local stamp = doc['timestamp']
if type(stamp) == 'number' then return {depth, string.format('%.17g', stamp)} end
if type(stamp) == 'string' then return {depth, stamp} end
return {depth, false}
""",
)

ALL = (TAKE, READ, DROP, FINISH, CLAIM, BEAT, UNBEAT, SAMPLE)
