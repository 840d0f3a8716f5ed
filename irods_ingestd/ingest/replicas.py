"""Replicas before disposal (``min_replicas``, ``replicate_to``: see :mod:`irods_ingestd.zoneparts.access`).

The gate before a zone's ``after = "delete"`` or ``"move"``: the landing file goes only when its object has
``min_replicas`` good replicas, each verified: replica status good, the size of the verified file, and a
checksum equal to the landing file's digest (SHA-256 as verified at ingest; in another scheme the landing
file is read again). A good replica without a checksum is checksummed by the server first (it reads the
replica). With ``replicate_to`` the worker makes the missing replicas itself, one resource after the other
(the server checksums the bytes it wrote: ``regChksum``), then verifies them the same way.

A file whose object is short of replicas is *held*: its after-action is deferred and tried again in
:data:`HOLD_RETRY` seconds (:func:`irods_ingestd.ingest.after.defer`), and the reason is kept in a hash per
zone, ``{prefix}:held:{zone}`` (relative path → reason), which ``irods-ingestd status`` lists. Nothing about a
replica is ever a reason to dispose of the file: an error (a resource that does not exist or is down, a
replica that does not verify) holds it, with that error as the reason.

Without ``min_replicas``, an action deferred by ``after_hold`` is held the same way when the object is no longer
in iRODS as verified (removed, or other bytes put there meanwhile): the landing file is then the only copy.
"""

from __future__ import annotations

import errno
import logging
import os
from typing import Any

import redis

from .. import checksums, keys, names
from ..job import ZoneSpec
from ..zoneparts.access import gates_disposal
from . import after, catalog
from .catalog import Replica
from .context import IngestContext
from .errors import describe, is_transient

log = logging.getLogger("irods_ingestd.ingest")

HOLD_RETRY = 30.0  # seconds before a held file's replicas are looked at again


held_key = keys.replica_held_key  # (the key names live in keys.py)


def _field(rel: str) -> bytes:
    return rel.encode("utf-8", "surrogateescape")


def held(r: redis.Redis, prefix: str, zone: str, limit: int = 20) -> tuple[int, list[tuple[str, str]]]:
    """How many of the zone's files are held for their replicas, and (path, reason) of the first `limit`."""
    key = held_key(prefix, zone)
    n = int(r.hlen(key))
    out: list[tuple[str, str]] = []
    for rel, reason in r.hscan_iter(key, count=max(limit, 10)):
        if len(out) >= limit:
            break
        out.append((rel.decode("utf-8", "surrogateescape") if isinstance(rel, bytes) else rel,
                    reason.decode() if isinstance(reason, bytes) else reason))
    return n, out


class _Expected:
    """The verified landing file's checksum in whatever scheme a replica's checksum is written."""

    def __init__(self, v: after.Verified, path: str, follow: bool) -> None:
        self.v, self.path, self.follow = v, path, follow
        self.digest = checksums.Digest({checksums.SHA2: bytes.fromhex(v.sha256)})

    def _open(self, path: str, mode: int) -> int:
        """The verified file, or OSError: never waits on a FIFO swapped in (O_NONBLOCK, then fstat)."""
        fd = after.open_verified(self.v, path, self.follow)
        if fd is None:
            raise OSError(errno.ESTALE, "the landing file is not the verified one any more", path)
        return fd

    def matches(self, checksum: str) -> bool:
        if not checksum:
            return False
        scheme = checksums.scheme_of(checksum)
        if scheme not in self.digest.by_scheme:  # e.g. an MD5 server: read the (verified, unchanged) file again
            self.digest = self.digest.extended(checksum, self.path, self._open)
        return self.digest.matches(checksum)


def _verified(session: Any, obj: str, reps: list[Replica], want: _Expected) -> list[Replica]:
    good = []
    for rep in reps:
        if not rep.good or rep.size != want.v.size:
            continue
        if not rep.checksum:  # good but never checksummed: the server reads it and records its checksum
            rep.checksum = catalog.replica_checksum(session, obj, rep.number)
        if want.matches(rep.checksum):
            good.append(rep)
    return good


def _short(n: int, want: int, zone: ZoneSpec, extra: str = "") -> str:
    how = f"replicating to {', '.join(zone.access.replicate_to)}" if zone.access.replicate_to else \
        "no replicate_to: waiting for replicas made elsewhere"
    return f"held: {n} of min_replicas = {want} good replicas ({how}){extra}"


def _ensure(session: Any, zone: ZoneSpec, obj: str, want: _Expected) -> str:
    """'' when the object has its replicas (made here when replicate_to says where); else why not."""
    need = zone.access.min_replicas
    reps = catalog.replicas(session, obj)
    if not reps:
        return f"held: no object {obj} in iRODS"
    good = _verified(session, obj, reps, want)
    for resc in zone.access.replicate_to:
        if len(good) >= need:
            break
        if any(g.resource == resc for g in good) or not good:  # no good source: nothing to replicate from
            continue
        catalog.replicate(session, obj, resc)
        reps = catalog.replicas(session, obj)
        good = _verified(session, obj, reps, want)
        if not any(g.resource == resc for g in good):
            made = [f"#{r.number} {'good' if r.good else 'not good'} {r.size} bytes {r.checksum or 'no checksum'}"
                    for r in reps if r.resource == resc]
            return _short(len(good), need, zone, f"; the replica on {resc} does not verify: "
                                                 f"{'; '.join(made) or 'none made'}")
        log.info("replicated %s to %s (checksum verified)", obj, resc)
    return "" if len(good) >= need else _short(len(good), need, zone)


def _present(session: Any, obj: str, v: after.Verified) -> str:
    """Without min_replicas, before a deferred delete/move: '' when the object is still in iRODS with a good
    replica of the verified size (and of the verified SHA-256 when the catalog has one in that scheme: the file is
    not read again); someone may have removed or overwritten it during after_hold, and the landing file is then
    the only copy of these bytes."""
    sha = checksums.Digest({checksums.SHA2: bytes.fromhex(v.sha256)}) if v.sha256 else None  # none: a record lost
    for rep in catalog.replicas(session, obj):
        if rep.good and rep.size == v.size and (sha is None or not rep.checksum.startswith("sha2:")
                                                or sha.matches(rep.checksum)):
            return ""
    return f"held: {obj} is no longer in iRODS as it was verified (removed, or other bytes put there): the " \
           f"landing file stays"


def hold(ctx: IngestContext, zone: ZoneSpec, v: after.Verified, recheck: bool = False) -> str:
    """The gate before delete/move: '' to go ahead; else the reason, and the action is deferred (held).
    `recheck` (an action deferred by after_hold): without min_replicas, the object must still be there."""
    gated = gates_disposal(zone.access)
    if not gated and not recheck:
        return ""
    key = held_key(ctx.ledger.prefix, zone.name)
    path = os.path.join(zone.root, v.rel)
    try:
        same = v.same(os.stat(path, follow_symlinks=zone.follow_symlinks))
    except OSError:
        same = False
    if not same:  # gone or replaced: the after-action itself says what became of it
        ctx.redis.hdel(key, _field(v.rel))
        return ""
    obj = names.target_for(zone.collection, v.rel).path
    try:
        session = ctx.sessions.get()
        reason = _ensure(session, zone, obj, _Expected(v, path, zone.follow_symlinks)) if gated else \
            _present(session, obj, v)
    except Exception as e:  # noqa: BLE001 - whatever it is, the file stays; the reason says why
        if is_transient(e):
            ctx.sessions.reset()
        reason = f"held: replicas of {obj} not verified: {describe(e)}"
    if not reason:
        ctx.redis.hdel(key, _field(v.rel))
        return ""
    ctx.redis.hset(key, _field(v.rel), reason)
    after.defer(ctx.redis, ctx.ledger.prefix, zone.name, v, HOLD_RETRY)
    return f"{reason} (looked at again in {HOLD_RETRY:g}s)"
