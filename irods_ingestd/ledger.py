"""The ledger: what was queued, ingested or failed, compactly in Redis, behind one small interface.

Layout (prefix `ingestd` by default; bytes a file measured by `python -m bench.run --only ledger`):

- `{p}:l:{zone}:{dirhash}`: one hash per landing directory (the *base* key). Field: 8 bytes of BLAKE2b
  of the file name. Value: `state(1) size(8) mtime_ns(8)`, then for `Q` queued: queued-at seconds (8) and
  the RQ job id (so a walk can tell a file whose job was lost); for `F` failed: failed-at seconds (8);
  `D` done: nothing more (17 bytes, what stays forever in keep and register zones). A directory of more
  than 128 files is split into buckets `{base}.{i}` of at most 128 fields, so every hash stays in Redis'
  listpack encoding (see `ledger_lua.py`); the walker reads a directory's entries in one round trip (two
  for a split one).
- `{p}:s:{zone}`: counters `queued` (entries in state Q: waiting for or in a worker), `done`, `bytes`;
  every change of state and of `queued` is one Lua script (`ledger_lua.py`), so `queued` stays exact,
  and `recount_*` rebuilds it from the entries while everything runs.
- `{p}:f:{zone}`: failed files, relative path → JSON reason. Few by nature; listed by `status`/`retry`.
- `{p}:r:{zone}`: relative paths a worker handed back to be settled again (changed after settling).

The first layout (before buckets) kept 8 more bytes in a done entry (a SHA-256 prefix nobody read) and any
number of fields in one hash. It is read as it is: a done entry's first 17 bytes are the same, and a
directory of the first layout is an unsplit one. It is compacted lazily (a directory above 128 entries is
split when a new file enters it) and by every recount (the daemon runs one at start).

Relative paths are `str` with surrogateescape for bytes that are not UTF-8; the ledger hashes their bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from . import keys
from . import ledger_lua as lua

QUEUED, DONE, FAILED = b"Q", b"D", b"F"
_VALUE = struct.Struct(">cQqQ")
_SHORT = struct.Struct(">cQq")  # a done entry: state, size, mtime_ns
_VERSION = struct.Struct(">Qq")
MARKER = b""  # the base key's field that holds a split directory's bucket count
# Directories a recount script counts (and compacts) at most, as Redis waits on each script: 16 directories of
# 1,000 files took 3.7 ms here (11.9 ms while compacting a ledger of the first layout; bench/ledger_bytes.py).
RECOUNT_KEYS = 16


@dataclass(frozen=True, slots=True)
class Entry:
    state: bytes
    size: int
    mtime_ns: int
    extra: int
    job: str = ""  # a queued entry's RQ job id ("" in entries written before job ids were kept)

    def same_version(self, size: int, mtime_ns: int) -> bool:
        return self.size == size and self.mtime_ns == mtime_ns


def split_rel(rel: str) -> tuple[str, str]:
    """'a/b/c.dat' → ('a/b', 'c.dat'); 'c.dat' → ('', 'c.dat')."""
    d, _, name = rel.rpartition("/")
    return d, name


def name_field(name: str) -> bytes:
    return hashlib.blake2b(os.fsencode(name), digest_size=8).digest()


def version_bytes(size: int, mtime_ns: int) -> bytes:
    """The 16 bytes of a packed entry that say which version of a file it is (after the state byte)."""
    return _VERSION.pack(size, mtime_ns)


def is_current(raw: bytes | None, size: int, mtime_ns: int, stale_before: int) -> bool:
    """True if a packed entry holds this version of the file and is not a queued entry older than
    stale_before (unix seconds): such a file needs nothing. Compares bytes, builds no object."""
    if raw is None or raw[1:17] != _VERSION.pack(size, mtime_ns):
        return False
    return raw[:1] != QUEUED or int.from_bytes(raw[17:25], "big") >= stale_before


def _by_dir(rels: Sequence[str]) -> tuple[dict[str, list[int]], list[bytes]]:
    """Directory → the indexes of its files in `rels`, and each file's name field (for one HMGET a directory)."""
    by_dir: dict[str, list[int]] = {}
    fields: list[bytes] = []
    for i, rel in enumerate(rels):
        d, name = split_rel(rel)
        by_dir.setdefault(d, []).append(i)
        fields.append(name_field(name))
    return by_dir, fields


def unpack(raw: bytes) -> Entry:
    if len(raw) < _VALUE.size:  # a done entry (17 bytes)
        state, size, mtime = _SHORT.unpack_from(raw)
        return Entry(state, size, mtime, 0)
    state, size, mtime, extra = _VALUE.unpack_from(raw)
    return Entry(state, size, mtime, extra, raw[_VALUE.size:].decode("ascii", "replace"))


def queued_job(raw: bytes) -> str:
    """The RQ job id a queued entry names ("" if it names none)."""
    return raw[_VALUE.size:].decode("ascii", "replace")


def _pack(state: bytes, size: int, mtime_ns: int, extra: int, job: str = "") -> bytes:
    return _VALUE.pack(state, size, mtime_ns, extra & 0xFFFFFFFFFFFFFFFF) + job.encode("ascii")


def done_value(size: int, mtime_ns: int) -> bytes:
    return _SHORT.pack(DONE, size, mtime_ns)


def is_bucket_key(key: bytes | str) -> bool:
    """A split directory's bucket (`{base}.{i}`), not a directory's base key."""
    k = key.encode() if isinstance(key, str) else key
    return b"." in k.rpartition(b":")[2]


def _job_of(f: tuple[str, int, int] | tuple[str, int, int, str]) -> str:
    return f[3] if len(f) > 3 else ""


class Ledger:
    def __init__(self, r: redis.Redis, prefix: str = "ingestd") -> None:
        self.r = r
        self.prefix = prefix
        self._result = r.register_script(lua.RESULT)
        self._queue = r.register_script(lua.QUEUE)
        self._drop_lost = r.register_script(lua.DROP_LOST)
        self._clear_failed = r.register_script(lua.CLEAR_FAILED)
        self._rc_begin = r.register_script(lua.RECOUNT_BEGIN)
        self._rc_step = r.register_script(lua.RECOUNT_STEP)
        self._rc_end = r.register_script(lua.RECOUNT_END)
        self._read_many = r.register_script(lua.READ_MANY)
        self._read_dirs = r.register_script(lua.READ_DIRS)
        self._drop_done = r.register_script(lua.DROP_DONE)

    # keys
    def dir_key(self, zone: str, reldir: str) -> str:
        return keys.dir_key(self.prefix, zone, reldir)

    def stats_key(self, zone: str) -> str:
        return keys.stats_key(self.prefix, zone)

    def failed_key(self, zone: str) -> str:
        return keys.failed_key(self.prefix, zone)

    def resettle_key(self, zone: str) -> str:
        return keys.resettle_key(self.prefix, zone)

    def _keys(self, zone: str, reldir: str) -> list[str]:
        """KEYS of the state-changing scripts: dir hash, stats, recount key, recount set."""
        return [self.dir_key(zone, reldir), self.stats_key(zone), keys.recount_key(self.prefix, zone),
                keys.recount_set_key(self.prefix, zone)]

    def dir_pattern(self, zone: str | None = None) -> str:
        """A SCAN pattern of a zone's directory hashes, or of every zone's (glob characters escaped)."""
        return keys.dir_pattern(self.prefix, zone)

    def transient_key(self, zone: str) -> str:
        return keys.transient_key(self.prefix, zone)

    # reads
    def dirs(self, zone: str, reldirs: Sequence[str]) -> list[dict[bytes, bytes]]:
        """The entries of several directories, one pipeline: field (name hash) → packed value (read
        with `is_current` in the walk's hot loop, or `unpack`). A split directory is read again whole by
        one script (all its buckets at one instant)."""
        pipe = self.r.pipeline(transaction=False)
        for d in reldirs:
            pipe.hgetall(self.dir_key(zone, d))
        out: list[dict[bytes, bytes]] = pipe.execute()
        split = [i for i, h in enumerate(out) if MARKER in h]
        if split:
            flat = self._read_dirs(keys=[self.dir_key(zone, reldirs[i]) for i in split])
            for i, kv in zip(split, flat, strict=True):
                out[i] = dict(zip(kv[::2], kv[1::2], strict=True))
        return out

    def get_many(self, zone: str, rels: Sequence[str]) -> list[Entry | None]:
        """The entries of these files: one script call (a directory's buckets found by the script)."""
        return self.get_many_on(None, zone, rels)

    def get_many_on(self, client: Any, zone: str, rels: Sequence[str]) -> list[Entry | None]:
        """`get_many` through this client (None: the ledger's) in one script call: a pipeline that WATCHes
        (its connection, before MULTI), so the check and the write of an enqueue share one connection."""
        by_dir, fields = _by_dir(rels)
        keys = [self.dir_key(zone, d) for d in by_dir]
        args: list[Any] = [len(idx) for idx in by_dir.values()] + [fields[i] for idx in by_dir.values() for i in idx]
        if client is None:
            values = self._read_many(keys=keys, args=args)
        else:  # a WATCHing pipeline runs commands at once: EVAL, as the script may not be loaded yet
            values = client.eval(lua.READ_MANY, len(keys), *keys, *args)
        out: list[Entry | None] = [None] * len(rels)
        for i, v in zip((i for idx in by_dir.values() for i in idx), values, strict=True):
            out[i] = unpack(v) if v else None
        return out

    def get(self, zone: str, rel: str) -> Entry | None:
        return self.get_many(zone, [rel])[0]

    def stats(self, zone: str) -> dict[str, int]:
        raw = self.r.hgetall(self.stats_key(zone))
        out = {"queued": 0, "done": 0, "bytes": 0}
        out.update({k.decode(): int(v) for k, v in raw.items()})
        out["failed"] = int(self.r.hlen(self.failed_key(zone)))
        return out

    def failures(self, zone: str) -> Iterator[tuple[str, dict[str, Any]]]:
        for rel, info in self.r.hscan_iter(self.failed_key(zone), count=1000):
            yield os.fsdecode(rel), json.loads(info)

    def outstanding(self, zones: Iterable[str]) -> int:
        """Files queued and not yet finished in these zones: the backlog the daemon bounds (one pipeline;
        no SCAN, which would walk a keyspace of millions of directory hashes)."""
        pipe = self.r.pipeline(transaction=False)
        for zone in zones:
            pipe.hget(self.stats_key(zone), "queued")
        return sum(int(v or 0) for v in pipe.execute())

    # writes
    def mark_queued(self, pipe: Any, zone: str, files: Iterable[tuple[str, int, int] | tuple[str, int, int, str]],
                    clear_failed: Iterable[str] = ()) -> None:
        """Add to a (transactional) pipeline: these files are queued now, each (rel, size, mtime_ns) or
        (rel, size, mtime_ns, job id) (one script a directory; `queued` grows only by the files that
        were not queued before); the failures listed for `clear_failed` (earlier versions) are dropped."""
        now = int(time.time())
        by_dir: dict[str, list[bytes]] = {}
        for f in files:
            d, name = split_rel(f[0])
            by_dir.setdefault(d, []).extend((name_field(name), _pack(QUEUED, f[1], f[2], now, _job_of(f))))
        for d, args in by_dir.items():
            self._queue(keys=self._keys(zone, d), args=args, client=pipe)
        failed = [os.fsencode(rel) for rel in clear_failed]
        if failed:
            pipe.hdel(self.failed_key(zone), *failed)

    def drop_lost(self, zone: str, rel: str, raw: bytes) -> bool:
        """Drop a queued entry whose job no longer exists in RQ, if it is still exactly `raw`: the file is
        then new to the ledger and queued again. False if the entry changed meanwhile."""
        d, name = split_rel(rel)
        return bool(self._drop_lost(keys=self._keys(zone, d), args=[name_field(name), raw]))

    def _record(self, zone: str, rel: str, size: int, mtime_ns: int, value: bytes, counter: str,
                 nbytes: int = 0, only_queued: bool = False) -> bool:
        d, name = split_rel(rel)
        args = [name_field(name), value, _VERSION.pack(size, mtime_ns), counter, nbytes,
                "1" if only_queued else "0"]
        return bool(self._result(keys=self._keys(zone, d), args=args))

    def mark_done(self, zone: str, rel: str, size: int, mtime_ns: int, sha256: bytes, keep: bool = True) -> bool:
        """Record an ingested file; False if a newer version was queued meanwhile (nothing changed).
        keep=False counts it but holds no entry: the landing file was deleted or moved away after ingest,
        so nothing on disk will ever be compared with it (a file of that name arriving later is new)."""
        value = done_value(size, mtime_ns) if keep else b""  # the checksum is in iRODS, not kept here
        ok = self._record(zone, rel, size, mtime_ns, value, "done", size)
        if ok:
            pipe = self.r.pipeline(transaction=False)
            pipe.hdel(self.failed_key(zone), os.fsencode(rel))
            pipe.hdel(self.transient_key(zone), os.fsencode(rel))
            pipe.execute()
        return ok

    def mark_failed(self, zone: str, rel: str, size: int, mtime_ns: int, reason: str,
                    kind: str = "permanent", only_queued: bool = False) -> bool:
        """Record a failure; with only_queued, only if the file is still queued at this version (a
        job that died: its files already done stay done)."""
        now = int(time.time())
        ok = self._record(zone, rel, size, mtime_ns, _pack(FAILED, size, mtime_ns, now), "",
                          only_queued=only_queued)
        if ok:
            info = {"reason": reason, "kind": kind, "size": size, "mtime_ns": mtime_ns, "at": now}
            self.r.hset(self.failed_key(zone), os.fsencode(rel), json.dumps(info))
        return ok

    def forget(self, zone: str, rel: str, size: int, mtime_ns: int, resettle: bool = False) -> bool:
        """Drop a file's entry (it will be seen as new); with resettle, ask the daemon to settle it again."""
        ok = self._record(zone, rel, size, mtime_ns, b"", "")
        if ok and resettle:
            self.r.rpush(self.resettle_key(zone), os.fsencode(rel))
        return ok

    def retry_failed(self, zones: Iterable[str]) -> int:
        """Hand the failed files back to the daemon (Redis only, no iRODS): each failure is cleared and the
        file asked to be settled again (the resettle list), which queues it anew. Returns how many."""
        n = 0
        for zone in zones:
            for rel, info in list(self.failures(zone)):
                self.forget(zone, rel, int(info.get("size", 0)), int(info.get("mtime_ns", 0)), resettle=True)
                self.clear_failure(zone, rel)
                n += 1
        return n

    def clear_failure(self, zone: str, rel: str) -> None:
        """Drop a file's failure, and its entry if that is still the failed one (a newer version queued
        meanwhile stays queued: deleting it would leave `queued` counting a file nobody holds)."""
        d, name = split_rel(rel)
        self.r.hdel(self.failed_key(zone), os.fsencode(rel))
        self._clear_failed(keys=[self.dir_key(zone, d)], args=[name_field(name)])

    def pop_resettle(self, zone: str, count: int = 1000) -> list[str]:
        raw = self.r.lpop(self.resettle_key(zone), count)
        return [os.fsdecode(x) for x in raw or []]

    def adjust_queued(self, zone: str, delta: int) -> None:
        self.r.hincrby(self.stats_key(zone), "queued", delta)

    # recount of `queued` (see ledger_lua.py): begin, step over every directory hash SCAN finds, end
    def recount_begin(self, zone: str, ttl: int = 3600) -> None:
        self._rc_begin(keys=self._keys(zone, "")[1:], args=[ttl])

    def recount_step(self, zone: str, dir_keys: Sequence[bytes | str], ttl: int = 3600) -> bool:
        """Count these directory hashes (those not counted yet); False if the recount is no longer on
        (another recount finished it, or it expired)."""
        bases = [k for k in dir_keys if not is_bucket_key(k)]  # a bucket is counted with its directory
        for i in range(0, len(bases), RECOUNT_KEYS):  # a script a few directories: Redis waits on each
            if int(self._rc_step(keys=self._keys(zone, "")[1:] + bases[i:i + RECOUNT_KEYS], args=[ttl])) < 0:
                return False
        return True

    def recount_end(self, zone: str) -> tuple[int, int] | None:
        """Set `queued` to the count; (before, after), or None if the recount was no longer on."""
        res = self._rc_end(keys=self._keys(zone, "")[1:])
        return (int(res[0]), int(res[1])) if res else None

    def note_transient(self, zone: str, rel: str) -> float:
        """A file's transient errors outlasted its retries: when that first happened (unix seconds)."""
        key, field = self.transient_key(zone), os.fsencode(rel)
        pipe = self.r.pipeline(transaction=False)
        pipe.hsetnx(key, field, str(time.time()))
        pipe.hget(key, field)
        return float(pipe.execute()[1] or time.time())

    def clear_transient(self, zone: str, rel: str) -> None:
        self.r.hdel(self.transient_key(zone), os.fsencode(rel))

    def drop_done(self, zone: str, rel: str, size: int, mtime_ns: int) -> bool:
        """Drop a done entry of this version (its landing file was deleted or moved after ingest, so nothing
        on disk will be compared with it); an entry of another version or state is left as it is."""
        d, name = split_rel(rel)
        return bool(self._drop_done(keys=[self.dir_key(zone, d)], args=[name_field(name), done_value(size, mtime_ns)]))
