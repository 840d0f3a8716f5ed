"""A completed directory ("unit") in Redis: what survives a daemon or worker restart.

Keys (prefix `{p}`, one set per zone):

- `{p}:unit:{zone}`: pending units, a sorted set: unit (its path relative to the zone) → when it is to be
  checked next. The daemon adds a unit when it is complete (its marker seen, its manifest's files all
  present and settled); the daemon hands due ones to the workers (:mod:`.jobs`) under a lease, like
  deferred after-actions; the worker's check removes the unit once all of it is verified and done.
- `{p}:unitinfo:{zone}`: unit → JSON ``{"kind", "file", "since", "state", "reason", "complete_at"}``:
  ``file`` is the marker or manifest (relative to the zone), ``state`` ``waiting``/``held``/``complete``.
- `{p}:unitdone:{zone}`: unit → JSON ``{"file", "at", "dev", "ino"}``: units completed, so a marker seen again (a
  restart, a marker that is never ingested) does not complete its directory twice.
- `{p}:unitwait:{zone}`: unit → why a directory with a manifest is not complete yet (the daemon's gate).
- `{p}:unitheld:{zone}:{hash}`: the verified files of one pending unit whose after-action waits for the
  whole directory: relative path → the :class:`~irods_ingestd.ingest.after.Verified` record (device,
  inode, size, mtime, SHA-256 as verified).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from .. import keys
from ..ingest.after import LEASE, Verified

# the key names live in keys.py with every other
pending_key = keys.unit_pending_key
info_key = keys.unit_info_key
done_key = keys.unit_done_key
held_key = keys.unit_held_key
waiting_key = keys.unit_waiting_key


@dataclass
class UnitInfo:
    kind: str  # marker | manifest
    file: str  # the marker or manifest, relative to the zone
    since: float = field(default_factory=time.time)
    state: str = "waiting"  # waiting (for its files to be verified) | held (a file failed) | complete
    reason: str = ""
    complete_at: float = 0.0  # when all of it was first found verified (after_hold counts from then)
    dev: int = 0  # its directory's device and inode when it completed (0: not known): a directory made again
    ino: int = 0  # under its name later is a new one

    def dumps(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def loads(cls, raw: bytes | str) -> UnitInfo:
        d = json.loads(raw)
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def note_waiting(r: redis.Redis, p: str, zone: str, unit: str, reason: str) -> None:
    """A directory not complete yet says why (its manifest's missing files); '' when it is complete."""
    if reason:
        r.hset(waiting_key(p, zone), os.fsencode(unit), reason)
    else:
        r.hdel(waiting_key(p, zone), os.fsencode(unit))


def describe(r: redis.Redis, p: str, zone: str, limit: int = 20) -> list[dict[str, str]]:
    """The zone's directories not done yet, for `status`: path, state, reason (at most `limit`)."""
    out = []
    for unit, why in r.hscan_iter(waiting_key(p, zone), count=1000):
        out.append({"path": os.fsdecode(unit) + "/", "state": "incomplete", "reason": os.fsdecode(why)})
    for unit, i in pending(r, p, zone).items():
        out.append({"path": unit + "/", "state": i.state, "reason": i.reason or f"{i.kind} {i.file} seen; "
                    f"waiting for its files to be verified"})
    return out[:limit]


def unit_of(rel: str) -> str:
    """The directory a marker or manifest completes: its own."""
    return rel.rpartition("/")[0]


def register(r: redis.Redis, p: str, zone: str, unit: str, info: UnitInfo) -> bool:
    """A unit is complete: pending from now (a check due at once). False if it was pending already."""
    pipe = r.pipeline(transaction=True)
    pipe.hsetnx(info_key(p, zone), os.fsencode(unit), info.dumps())
    pipe.zadd(pending_key(p, zone), {os.fsencode(unit): time.time()}, nx=True)
    return bool(pipe.execute()[0])


def pending(r: redis.Redis, p: str, zone: str) -> dict[str, UnitInfo]:
    out = {}
    for unit, raw in r.hscan_iter(info_key(p, zone), count=1000):
        try:
            out[os.fsdecode(unit)] = UnitInfo.loads(raw)
        except (ValueError, TypeError):
            continue
    return out


def done(r: redis.Redis, p: str, zone: str) -> dict[str, dict[str, Any]]:
    return {os.fsdecode(u): json.loads(v) for u, v in r.hscan_iter(done_key(p, zone), count=1000)}


def is_done(r: redis.Redis, p: str, zone: str, unit: str) -> bool:
    return bool(r.hexists(done_key(p, zone), os.fsencode(unit)))


def info(r: redis.Redis, p: str, zone: str, unit: str) -> UnitInfo | None:
    raw = r.hget(info_key(p, zone), os.fsencode(unit))
    return UnitInfo.loads(raw) if raw else None


def save_info(r: redis.Redis, p: str, zone: str, unit: str, i: UnitInfo) -> None:
    r.hset(info_key(p, zone), os.fsencode(unit), i.dumps())


def recheck_in(r: redis.Redis, p: str, zone: str, unit: str, delay: float) -> None:
    r.zadd(pending_key(p, zone), {os.fsencode(unit): time.time() + delay}, xx=True)


_TAKE_LUA = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, m in ipairs(due) do redis.call('ZADD', KEYS[1], 'XX', ARGV[3], m) end
return due
"""


def take_due(r: redis.Redis, p: str, zone: str, limit: int = 50) -> list[str]:
    """Pending units due for a check, leased (due again after LEASE if the check's job is lost)."""
    now = time.time()
    raw = r.eval(_TAKE_LUA, 1, pending_key(p, zone), now, limit, now + LEASE)
    return [os.fsdecode(x) for x in raw or []]


def finish(r: redis.Redis, p: str, zone: str, unit: str, file: str, dev: int = 0, ino: int = 0) -> None:
    """All of the unit is verified and its after-action done: it leaves the pending set for good (`dev`, `ino`:
    its directory's, so a directory made again under its name is known as a new one)."""
    pipe = r.pipeline(transaction=True)
    pipe.zrem(pending_key(p, zone), os.fsencode(unit))
    pipe.hdel(info_key(p, zone), os.fsencode(unit))
    pipe.hset(done_key(p, zone), os.fsencode(unit),
              json.dumps({"file": file, "at": time.time(), "dev": dev, "ino": ino}))
    pipe.delete(held_key(p, zone, unit))
    pipe.hdel(waiting_key(p, zone), os.fsencode(unit))
    pipe.execute()


def forget(r: redis.Redis, p: str, zone: str, unit: str) -> None:
    """The unit's directory is gone (moved away, removed): nothing of it is pending or done any more."""
    pipe = r.pipeline(transaction=True)
    pipe.zrem(pending_key(p, zone), os.fsencode(unit))
    pipe.hdel(info_key(p, zone), os.fsencode(unit))
    pipe.hdel(done_key(p, zone), os.fsencode(unit))
    pipe.delete(held_key(p, zone, unit))
    pipe.hdel(waiting_key(p, zone), os.fsencode(unit))
    pipe.execute()


# -- verified files whose after-action waits for their directory ----------------------------------------
_HOLD_LUA = """
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
return 1
"""


def hold(r: redis.Redis, p: str, zone: str, unit: str, v: Verified) -> bool:
    """Keep a verified file's after-action for its directory; False if the unit is not pending (complete
    already, or never was): then the file's own after-action applies."""
    return bool(r.eval(_HOLD_LUA, 2, pending_key(p, zone), held_key(p, zone, unit), os.fsencode(unit),
                       os.fsencode(v.rel), json.dumps(asdict(v), sort_keys=True)))


def held(r: redis.Redis, p: str, zone: str, unit: str) -> dict[str, Verified]:
    return {os.fsdecode(k): Verified.load(json.loads(v)) for k, v in r.hgetall(held_key(p, zone, unit)).items()}
