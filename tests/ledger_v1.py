"""The ledger's first layout, written as the code before buckets wrote it: one hash a directory whatever its
size, a done entry of 25 bytes (`D` size mtime_ns and 8 bytes of the SHA-256). Shared by the migration tests
and the bench (bench/ledger_bytes.py) that measures it."""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import Any

from irods_ingestd import keys
from irods_ingestd.ledger import name_field, split_rel

V1_DONE = struct.Struct(">cQqQ")

# The first layout's result script (the done/failed/forget write), as it was: one hash a directory.
# ARGV: field, value, size+mtime (16 bytes), counter, bytes, only-queued flag. KEYS: dir, stats, rc, rcs.
V1_RESULT = """
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


def v1_done_value(size: int, mtime_ns: int, sha256: bytes = b"\x01" * 32) -> bytes:
    return V1_DONE.pack(b"D", size, mtime_ns, int.from_bytes(sha256[:8], "big"))


def write_v1_done(r: Any, zone: str, files: Iterable[tuple[str, int, int]], prefix: str = "ingestd",
                  chunk: int = 5000) -> int:
    """Files as done in the first layout, by its result script over a pipeline (as mark_done wrote them)."""
    script = r.register_script(V1_RESULT)
    pipe = r.pipeline(transaction=False)
    n = 0
    ks = [keys.stats_key(prefix, zone), keys.recount_key(prefix, zone), keys.recount_set_key(prefix, zone)]
    for rel, size, mtime in files:
        d, name = split_rel(rel)
        script(keys=[keys.dir_key(prefix, zone, d), *ks], client=pipe,
               args=[name_field(name), v1_done_value(size, mtime), struct.pack(">Qq", size, mtime), "done", size, "0"])
        n += 1
        if n % chunk == 0:
            pipe.execute()
    pipe.execute()
    return n
