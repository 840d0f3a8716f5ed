"""The ledger's Lua scripts: every change of a file's state and the `queued` counter in one atomic step.

`queued` counts the entries in state Q (a file waiting for or in a worker). It stays exact because each
script changes it by exactly the change in Q entries it makes: queueing a file already queued (a newer
version, a lost job) adds nothing; a result for an older version changes nothing.

A recount (`Ledger.recount_*`) rebuilds it from the entries while workers and daemons go on: while the
recount key `{p}:rc:{zone}` exists, it holds the running count `n` and the set `{p}:rcs:{zone}` the
directory hashes already counted. A script that changes a hash already counted adds its change to `n`;
one that changes a hash not counted yet counts that whole hash (after its change) and adds it to the set;
the recount's SCAN counts the hashes nobody touched. At the end `n` is exact and becomes `queued`.

Every script takes KEYS: dir hash, stats hash, recount key, recount set (then its own).
"""

from __future__ import annotations

_COMMON = """
local function count_q(key)
  local n = 0
  for _, v in ipairs(redis.call('HVALS', key)) do
    if string.sub(v, 1, 1) == 'Q' then n = n + 1 end
  end
  return n
end
local function recount_note(delta)
  if redis.call('EXISTS', KEYS[3]) == 0 then return end
  if redis.call('SISMEMBER', KEYS[4], KEYS[1]) == 1 then
    if delta ~= 0 then redis.call('HINCRBY', KEYS[3], 'n', delta) end
  else
    redis.call('HINCRBY', KEYS[3], 'n', count_q(KEYS[1]))
    redis.call('SADD', KEYS[4], KEYS[1])
  end
end
local function is_q(v) return v and string.sub(v, 1, 1) == 'Q' end
"""

# Mark files of one directory queued. ARGV: field, value, field, value, ... Returns how many were not
# queued before (the change of `queued`).
QUEUE = _COMMON + """
local n = 0
for i = 1, #ARGV, 2 do
  if not is_q(redis.call('HGET', KEYS[1], ARGV[i])) then n = n + 1 end
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
if n > 0 then redis.call('HINCRBY', KEYS[2], 'queued', n) end
recount_note(n)
return n
"""

# Record a worker's result unless a newer version of the file was queued meanwhile.
# ARGV: field, new value ('' deletes), size+mtime packed (16 bytes), counter to increment ('' none),
# bytes to add to the `bytes` counter, '1' to change only a queued entry.
RESULT = _COMMON + """
local old = redis.call('HGET', KEYS[1], ARGV[1])
if ARGV[6] == '1' and not is_q(old) then return 0 end
local delta = 0
if is_q(old) then
  if string.sub(old, 2, 17) ~= ARGV[3] then return 0 end
  redis.call('HINCRBY', KEYS[2], 'queued', -1)
  delta = -1
end
if ARGV[2] == '' then redis.call('HDEL', KEYS[1], ARGV[1])
else redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
if ARGV[4] ~= '' then redis.call('HINCRBY', KEYS[2], ARGV[4], 1) end
if tonumber(ARGV[5]) > 0 then redis.call('HINCRBY', KEYS[2], 'bytes', ARGV[5]) end
recount_note(delta)
return 1
"""

# Drop a queued entry whose job was lost, if it is still exactly that entry. ARGV: field, the entry's
# value as read. Returns 1 if dropped.
DROP_LOST = _COMMON + """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HINCRBY', KEYS[2], 'queued', -1)
recount_note(-1)
return 1
"""

# Drop a failed entry (retry). ARGV: field. Returns 1 if dropped; another state is left alone.
CLEAR_FAILED = """
local old = redis.call('HGET', KEYS[1], ARGV[1])
if not (old and string.sub(old, 1, 1) == 'F') then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
return 1
"""

# Recount. KEYS: stats hash, recount key, recount set, then (step) the dir hashes to count.
RECOUNT_BEGIN = """
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('DEL', KEYS[3])
  redis.call('HSET', KEYS[2], 'n', 0)
end
redis.call('EXPIRE', KEYS[2], ARGV[1])
return 1
"""

RECOUNT_STEP = """
if redis.call('EXISTS', KEYS[2]) == 0 then return -1 end
local total = 0
for i = 4, #KEYS do
  if redis.call('SISMEMBER', KEYS[3], KEYS[i]) == 0 then
    local n = 0
    for _, v in ipairs(redis.call('HVALS', KEYS[i])) do
      if string.sub(v, 1, 1) == 'Q' then n = n + 1 end
    end
    total = total + n
    redis.call('SADD', KEYS[3], KEYS[i])
  end
end
redis.call('HINCRBY', KEYS[2], 'n', total)
redis.call('EXPIRE', KEYS[2], ARGV[1])
redis.call('EXPIRE', KEYS[3], ARGV[1])
return total
"""

RECOUNT_END = """
if redis.call('EXISTS', KEYS[2]) == 0 then return false end
local n = tonumber(redis.call('HGET', KEYS[2], 'n'))
local old = tonumber(redis.call('HGET', KEYS[1], 'queued') or '0')
redis.call('HSET', KEYS[1], 'queued', n)
redis.call('DEL', KEYS[2], KEYS[3])
return {old, n}
"""

# Read entries of several directories in one call (on a WATCHing connection, before its MULTI).
# KEYS: dir hashes. ARGV: for each key the number of its fields, then all the fields in key order.
READ_MANY = """
local out = {}
local pos = #KEYS + 1
for i, key in ipairs(KEYS) do
  local n = tonumber(ARGV[i])
  if n > 0 then
    local vals = redis.call('HMGET', key, unpack(ARGV, pos, pos + n - 1))
    for j = 1, n do table.insert(out, vals[j]) end
  end
  pos = pos + n
end
return out
"""
