"""The ledger's Lua scripts: every change of a file's state and the `queued` counter in one atomic step.

A directory's entries live in its hash `{p}:l:{zone}:{dirhash}` (the *base* key) while they are at most
`LIMIT`; past that the base holds only the field `''` = n (a power of two) and the entries live in n
*buckets* `{base}.{i}`, i = the field's first three bytes (big-endian) mod n, none above `LIMIT` fields,
so every bucket stays in Redis' compact listpack encoding (`hash-max-listpack-entries` is 128 by default;
above it a hash costs twice the bytes). The scripts find the key of a field themselves (`key_of`), so a
caller names only the base key; when a new field would push its key past `LIMIT`, the whole directory is
laid out again in enough buckets (`rebuild`, O(files of the directory), once per doubling). The buckets
are not declared KEYS: they share the base's `{zone}` part, so a Redis Cluster with hash tags on the zone
keeps them in its slot (docs/capacity.md).

`queued` counts the entries in state Q (a file waiting for or in a worker). It stays exact because each
script changes it by exactly the change in Q entries it makes: queueing a file already queued (a newer
version, a lost job) adds nothing; a result for an older version changes nothing.

A recount (`Ledger.recount_*`) rebuilds it from the entries while workers and daemons go on: while the
recount key `{p}:rc:{zone}` exists, it holds the running count `n` and the set `{p}:rcs:{zone}` the
directories (base keys) already counted. A script that changes a directory already counted adds its change
to `n`; one that changes a directory not counted yet counts that whole directory (after its change) and
adds it to the set; the recount's SCAN counts the directories nobody touched. At the end `n` is exact and
becomes `queued`. A recount also compacts what it counts (entries of the first layout, see `ledger.py`).

Every state-changing script takes KEYS: base key, stats hash, recount key, recount set.
"""

from __future__ import annotations

LIMIT = 128  # fields a key may hold (Redis' default hash-max-listpack-entries)
REBUILD_FILL = 112  # a rebuild chooses the fewest buckets holding at most this many fields each

_DIR = f"""
local LIMIT = {LIMIT}
local FILL = {REBUILD_FILL}
local function nbuckets(base)
  local v = redis.call('HGET', base, '')
  if v then return tonumber(v) end
  return 0
end
local function bucket_index(field, n)
  local a, b, c = string.byte(field, 1, 3)
  return (((a or 0) * 256 + (b or 0)) * 256 + (c or 0)) % n
end
local function key_of(base, n, field)
  if n == 0 then return base end
  return base .. '.' .. bucket_index(field, n)
end
local function dir_keys(base)
  local n = nbuckets(base)
  if n == 0 then return {{base}} end
  local t = {{}}
  for i = 0, n - 1 do t[i + 1] = base .. '.' .. i end
  return t
end
local function entries(base)
  local out = {{}}
  for _, k in ipairs(dir_keys(base)) do
    local all = redis.call('HGETALL', k)
    for i = 1, #all, 2 do
      if all[i] ~= '' then out[#out + 1] = all[i]; out[#out + 1] = all[i + 1] end
    end
  end
  return out
end
local function compact_value(v)
  if #v == 25 and string.sub(v, 1, 1) == 'D' then return string.sub(v, 1, 17) end
  return v
end
local function rebuild(base, all)
  local total = #all / 2
  local n = 2
  while n * FILL < total do n = n * 2 end
  local idx
  while true do
    idx = {{}}
    local counts = {{}}
    local ok = true
    for i = 1, #all, 2 do
      local b = bucket_index(all[i], n)
      idx[i] = b
      counts[b] = (counts[b] or 0) + 1
      if counts[b] > FILL then ok = false; break end
    end
    if ok or n >= 16777216 then break end  -- 2^24: the index's three bytes are all used
    n = n * 2
  end
  for _, k in ipairs(dir_keys(base)) do redis.call('DEL', k) end
  redis.call('DEL', base)
  local per = {{}}
  for i = 1, #all, 2 do
    local t = per[idx[i]]
    if not t then t = {{}}; per[idx[i]] = t end
    t[#t + 1] = all[i]; t[#t + 1] = compact_value(all[i + 1])
  end
  for b, t in pairs(per) do redis.call('HSET', base .. '.' .. b, unpack(t)) end
  redis.call('HSET', base, '', n)
  return n
end
local function get(base, field)
  return redis.call('HGET', key_of(base, nbuckets(base), field), field)
end
local function key_for_write(base, field)
  local k = key_of(base, nbuckets(base), field)
  if redis.call('HLEN', k) < LIMIT or redis.call('HEXISTS', k, field) == 1 then return k end
  rebuild(base, entries(base))
  return key_of(base, nbuckets(base), field)
end
local function count_q(base)
  local n = 0
  for _, k in ipairs(dir_keys(base)) do
    for _, v in ipairs(redis.call('HVALS', k)) do
      if string.sub(v, 1, 1) == 'Q' then n = n + 1 end
    end
  end
  return n
end
"""

_COMMON = _DIR + """
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
  local k = key_for_write(KEYS[1], ARGV[i])
  if not is_q(redis.call('HGET', k, ARGV[i])) then n = n + 1 end
  redis.call('HSET', k, ARGV[i], ARGV[i + 1])
end
if n > 0 then redis.call('HINCRBY', KEYS[2], 'queued', n) end
recount_note(n)
return n
"""

# Record a worker's result unless a newer version of the file was queued meanwhile.
# ARGV: field, new value ('' deletes), size+mtime packed (16 bytes), counter to increment ('' none),
# bytes to add to the `bytes` counter, '1' to change only a queued entry.
RESULT = _COMMON + """
local old = get(KEYS[1], ARGV[1])
if ARGV[6] == '1' and not is_q(old) then return 0 end
if ARGV[2] ~= '' and old == ARGV[2] then return 1 end  -- the same result again (a job run twice): counted once
local delta = 0
if is_q(old) then
  if string.sub(old, 2, 17) ~= ARGV[3] then return 0 end
  redis.call('HINCRBY', KEYS[2], 'queued', -1)
  delta = -1
end
if ARGV[2] == '' then redis.call('HDEL', key_of(KEYS[1], nbuckets(KEYS[1]), ARGV[1]), ARGV[1])
else redis.call('HSET', key_for_write(KEYS[1], ARGV[1]), ARGV[1], ARGV[2]) end
if ARGV[4] ~= '' then redis.call('HINCRBY', KEYS[2], ARGV[4], 1) end
if tonumber(ARGV[5]) > 0 then redis.call('HINCRBY', KEYS[2], 'bytes', ARGV[5]) end
recount_note(delta)
return 1
"""

# Drop a queued entry whose job was lost, if it is still exactly that entry. ARGV: field, the entry's
# value as read. Returns 1 if dropped.
DROP_LOST = _COMMON + """
local k = key_of(KEYS[1], nbuckets(KEYS[1]), ARGV[1])
if redis.call('HGET', k, ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HDEL', k, ARGV[1])
redis.call('HINCRBY', KEYS[2], 'queued', -1)
recount_note(-1)
return 1
"""

# Drop a failed entry (retry). KEYS: base key. ARGV: field. Returns 1 if dropped; another state is left alone.
CLEAR_FAILED = _DIR + """
local k = key_of(KEYS[1], nbuckets(KEYS[1]), ARGV[1])
local old = redis.call('HGET', k, ARGV[1])
if not (old and string.sub(old, 1, 1) == 'F') then return 0 end
redis.call('HDEL', k, ARGV[1])
return 1
"""

# Drop a done entry of this version. KEYS: base key. ARGV: field, 'D' + size+mtime (17 bytes).
DROP_DONE = _DIR + """
local k = key_of(KEYS[1], nbuckets(KEYS[1]), ARGV[1])
local old = redis.call('HGET', k, ARGV[1])
if old and string.sub(old, 1, 17) == ARGV[2] then return redis.call('HDEL', k, ARGV[1]) end
return 0
"""

# Recount. KEYS: stats hash, recount key, recount set, then (step) the base keys to count.
RECOUNT_BEGIN = """
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('DEL', KEYS[3])
  redis.call('HSET', KEYS[2], 'n', 0)
end
redis.call('EXPIRE', KEYS[2], ARGV[1])
return 1
"""

# A step also compacts each directory it counts: one of the first layout above LIMIT entries is laid out
# in buckets, a done entry of the first layout (25 bytes) loses its unread checksum prefix.
RECOUNT_STEP = _DIR + """
if redis.call('EXISTS', KEYS[2]) == 0 then return -1 end
local total = 0
for i = 4, #KEYS do
  local base = KEYS[i]
  if redis.call('SISMEMBER', KEYS[3], base) == 0 then
    total = total + count_q(base)
    redis.call('SADD', KEYS[3], base)
    if nbuckets(base) == 0 and redis.call('HLEN', base) > LIMIT then
      rebuild(base, entries(base))
    else
      for _, k in ipairs(dir_keys(base)) do
        local all = redis.call('HGETALL', k)
        for j = 1, #all, 2 do
          if #all[j + 1] == 25 and string.sub(all[j + 1], 1, 1) == 'D' then
            redis.call('HSET', k, all[j], compact_value(all[j + 1]))
          end
        end
      end
    end
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

# Read entries of several directories in one call (also on a WATCHing connection, before its MULTI).
# KEYS: base keys. ARGV: for each key the number of its fields, then all the fields in key order.
READ_MANY = _DIR + """
local out = {}
local pos = #KEYS + 1
for i, base in ipairs(KEYS) do
  local n = tonumber(ARGV[i])
  local nb = nbuckets(base)
  if n > 0 and nb == 0 then
    for s = pos, pos + n - 1, 1000 do  -- unpack takes at most a few thousand values
      local e = math.min(s + 999, pos + n - 1)
      local vals = redis.call('HMGET', base, unpack(ARGV, s, e))
      for j = 1, e - s + 1 do table.insert(out, vals[j]) end
    end
  else
    for j = pos, pos + n - 1 do table.insert(out, redis.call('HGET', key_of(base, nb, ARGV[j]), ARGV[j])) end
  end
  pos = pos + n
end
return out
"""

# All the entries of these directories (split ones), one flat field, value list a directory. KEYS: base keys.
READ_DIRS = _DIR + """
local out = {}
for i, base in ipairs(KEYS) do out[i] = entries(base) end
return out
"""
