"""After-actions: what happens to a landing file once its copy in iRODS is verified.

A zone's ``after`` names one of :data:`ACTIONS` (``keep`` needs none). An action acts only on the very
file that was verified and never destroys another:

* It is the same file: device, inode, size and mtime equal what the worker verified. A file replaced
  meanwhile (an atomic rename of another file onto the name) or grown is left alone: it is a new version,
  which the daemon queues.
* Its bytes are the verified ones: a file whose ctime moved since the worker looked at it (a rewrite of the
  same size with its mtime set back by ``os.utime``; a chmod, a hard link) is read again and hashed, and
  left (a new version, queued again) unless its SHA-256 is the verified one.
* Nobody writes it: a file that a process on this host still holds open for writing (a writer that
  paused longer than ``settle``) is not touched; the action is tried again later
  (:func:`fsops.open_for_writing`).
* Not before the zone's ``after_hold`` (seconds since verification; by default its ``settle``): the
  worker defers the action (:func:`defer`), the daemon hands due actions back to the workers
  (:func:`take_due`), which run them with :func:`run`.
* ``delete`` first renames the file to a private name, checks that what it renamed is still the
  verified file, and only then unlinks it (a file swapped in at the last moment is put back).
* ``move`` never overwrites in ``move_to``: a name already taken there gets ``name.~1~``, ``.~2~``…;
  across devices the copy is checked against the verified SHA-256 before the source goes.

Adding an action: a module under ``actions/`` with ``run(zone, item, path) -> None`` raising
:class:`Changed` (not the verified file) or ``OSError``, and one line in :data:`irods_ingestd.registry.AFTER_ACTIONS`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import time
from dataclasses import asdict, dataclass, fields
from typing import Any

import redis

from .. import fsops, keys, names, registry
from ..job import ZoneSpec
from . import sidecar_after
from .local import via_symlink

log = logging.getLogger(__name__)

RETRY_BUSY = 5.0  # seconds between tries on a file that is still open for writing


class Changed(Exception):
    """The landing file is not the verified one any more (replaced, grown, truncated)."""


@dataclass(frozen=True)
class Verified:
    """The landing file a worker verified in iRODS, as it was then."""

    rel: str
    size: int
    mtime_ns: int
    dev: int
    ino: int
    sha256: str  # hex
    ctime_ns: int = 0  # the ctime the worker saw (0: not known, e.g. a record of an earlier version)

    def same(self, st: os.stat_result) -> bool:
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) == (self.dev, self.ino, self.size, self.mtime_ns)

    @classmethod
    def load(cls, d: dict[str, Any]) -> Verified:
        """From its record, ignoring fields a later version added (a rolling upgrade: records written by newer
        workers are read by this one)."""
        return cls(**{k: v for k, v in d.items() if k in _VERIFIED_FIELDS})


_VERIFIED_FIELDS = frozenset(f.name for f in fields(Verified))


def open_verified(item: Verified, path: str, follow: bool = False) -> int | None:
    """A read descriptor on the verified file at `path`, or None when another file is there now; never waits
    on a FIFO swapped in (O_NONBLOCK, then fstat)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW))
    if not item.same(os.fstat(fd)):
        os.close(fd)
        return None
    return fd


def same_bytes(item: Verified, path: str, follow: bool = False) -> bool:
    """The file at `path` still holds the verified bytes (read again and hashed); never blocks on a FIFO."""
    fd = open_verified(item, path, follow)
    if fd is None:
        return False
    with os.fdopen(fd, "rb", buffering=0) as f:
        h = hashlib.sha256()
        while chunk := f.read(8 << 20):
            h.update(chunk)
    return h.hexdigest() == item.sha256


# outcomes of run()
DONE, CHANGED, BUSY, GONE, FAILED = "done", "changed", "busy", "gone", "failed"


def private(path: str, what: str) -> str:
    d, name = os.path.split(path)
    token = secrets.token_hex(3)
    aside = f".{name}.ingestd-{what}.{token}"  # reserved (names.RESERVED_LANDING): never ingested
    if len(os.fsencode(aside)) > 255:
        aside = f".ingestd-{what}.{token}"
    return os.path.join(d, aside)


def put_back(src: str, path: str) -> str:
    """Rename a file we took aside back under its name (or a free numbered one if that was taken)."""
    return fsops.rename_to_free_name(src, path)


def take_aside(item: Verified, path: str, what: str, follow: bool = False) -> str:
    """Rename the landing file to a private name and check it is the verified file; Changed otherwise."""
    aside = private(path, what)
    fsops.rename_noreplace(path, aside)
    if not item.same(os.stat(aside, follow_symlinks=follow)):  # a followed link: the file it leads to
        back = put_back(aside, path)
        raise Changed(f"replaced after verification (left as {os.path.basename(back)})")
    return aside


def failed_why(zone: ZoneSpec, e: OSError, path: str) -> str:
    """An after-action's failure, naming the path it failed on when that is not the landing file (the
    move_to directory or target: the one an administrator has to fix)."""
    why = f"after = {zone.after} failed: {e.strerror or e}"
    other = e.filename2 or e.filename
    if isinstance(other, bytes):
        other = os.fsdecode(other)
    if e.strerror and isinstance(other, str) and other and other != path and other not in e.strerror:
        why += f" ({names.display(other)})"
    return why


def run(zone: ZoneSpec, item: Verified) -> tuple[str, str]:
    """Apply the zone's after-action to a verified file now: (outcome, reason)."""
    if zone.after not in registry.AFTER_ACTIONS:
        return DONE, ""
    action = registry.load(registry.AFTER_ACTIONS, zone.after).run
    path = os.path.join(zone.root, item.rel)
    if not zone.follow_symlinks and via_symlink(zone.root, item.rel):  # never act on a file outside the zone
        return GONE, "gone before its after-action (its directory is a symlink now)"
    if sidecar_after.hold(zone, item.rel):  # its file has yet to take its AVUs: the next walk brings it back
        return DONE, ""
    try:
        st = os.stat(path, follow_symlinks=zone.follow_symlinks)
    except FileNotFoundError:
        return GONE, "gone before its after-action"
    except OSError as e:
        return FAILED, failed_why(zone, e, path)
    if not item.same(st):
        return CHANGED, f"not {zone.after}d: the landing file changed after its ingest"
    try:  # its ctime moved (a write with the mtime set back, a chmod, a link): are the bytes still the verified ones?
        if st.st_ctime_ns != item.ctime_ns and item.sha256 and not same_bytes(item, path, zone.follow_symlinks):
            return CHANGED, f"not {zone.after}d: rewritten in place after its ingest (same size and mtime, " \
                            f"other bytes than the copy verified in iRODS)"
    except FileNotFoundError:
        return GONE, "gone before its after-action"
    except OSError as e:
        return FAILED, failed_why(zone, e, path)
    if fsops.open_for_writing(path):
        return BUSY, f"not {zone.after}d yet: a process still has it open for writing"
    try:
        action(zone, item, path)
    except Changed as e:
        return CHANGED, f"not {zone.after}d: {e}"
    except FileNotFoundError:
        return GONE, "gone before its after-action"
    except OSError as e:
        return FAILED, failed_why(zone, e, path)
    return DONE, ""


# --- deferred actions: a sorted set per zone, scored by the time they are due ---------------------------
# An action stays in the set until a worker has run it (:func:`settle_item`): taking it only pushes its
# score a lease ahead, so one whose job is lost (a killed worker, an abandoned job) comes due again.

LEASE = 30.0  # seconds a taken action waits for its job before it is handed out again (running it twice is
# harmless: the second finds the file gone, or locked by the first)


def _key(prefix: str, zone: str) -> str:
    return keys.after_key(prefix, zone)


def _member(item: Verified) -> str:
    return json.dumps(asdict(item), sort_keys=True)


def defer(r: redis.Redis, prefix: str, zone: str, item: Verified, delay: float) -> None:
    r.zadd(_key(prefix, zone), {_member(item): time.time() + delay})


def settle_item(r: redis.Redis, prefix: str, zone: str, item: Verified) -> None:
    """The action ran (done, gone, changed or failed for good): it leaves the set."""
    r.zrem(_key(prefix, zone), _member(item))


_TAKE_LUA = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, m in ipairs(due) do redis.call('ZADD', KEYS[1], 'XX', ARGV[3], m) end
return due
"""


def take_due(r: redis.Redis, prefix: str, zone: str, limit: int = 200, now: float | None = None) -> list[Verified]:
    """The zone's deferred actions that are due, leased to whoever takes them (due again after LEASE)."""
    now = now if now is not None else time.time()
    raw = r.eval(_TAKE_LUA, 1, _key(prefix, zone), now, limit, now + LEASE)
    return [Verified.load(json.loads(x)) for x in raw or []]


def pending(r: redis.Redis, prefix: str, zone: str) -> int:
    return int(r.zcard(_key(prefix, zone)))
