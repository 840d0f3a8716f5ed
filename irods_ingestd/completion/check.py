"""The worker's check of one completed directory ("unit"), run until all of it is verified and done.

Each check lists the directory and reads its files' ledger entries:

1. A file not yet verified at its current version (settling, queued, a copy in progress under a temporary
   name): looked at again in a few seconds.
2. A file that failed (a sum that does not match its manifest, a conflict …), or a file its manifest lists
   that is missing: the directory is *held*, with the reason in its record and the journal; none of its
   files is moved or deleted; looked at again (``retry`` queues the failed files again). The good files are
   in iRODS all the same: only the landing set is kept.
3. Everything verified: the marker is ingested now (``marker_ingest = "last"``); after ``after_hold`` the
   directory's after-action runs: ``move`` renames the whole directory into ``move_to``
   (:mod:`.dirmove`), ``delete`` hands each file's held delete to the per-file action (identity and
   open-for-writing checks, ``min_replicas``); then :func:`.completed.unit_complete`, and the unit is done.

With ``min_replicas`` (the access part) a directory's files are moved one by one, each once its replicas are
verified, instead of the directory as a whole.
"""

from __future__ import annotations

import logging
import os
import time

from .. import names, notify
from ..config import ZoneConfig
from ..filters import NameFilter
from ..ingest import after, results
from ..ingest.batch import ingest_file
from ..ingest.context import IngestContext
from ..job import FileItem, ZoneSpec
from ..ledger import DONE, FAILED, Entry
from ..locks import FileLock
from . import dirmove, manifest, units
from .completed import CompletedUnit, collection_avus, unit_complete

log = logging.getLogger("irods_ingestd.ingest")

RECHECK = 3.0  # seconds until a directory with files still on their way is looked at again
RECHECK_PER_FILE = 0.0003  # … at least this much a file it holds (a look stats and asks the ledger about each)
RECHECK_MAX = 60.0
HELD_RECHECK = 30.0  # … a held one (a failed or missing file)
WAITING, HELD, DONE_, GONE = "waiting", "held", "complete", "gone"


def _names(ctx: IngestContext, zone: ZoneSpec) -> NameFilter:
    try:
        return NameFilter.for_zone(ctx.config.zone(zone.name))
    except KeyError:  # a worker whose config lacks the zone: the default patterns
        return NameFilter.for_zone(ZoneConfig(zone.name, zone.root, zone.collection))  # type: ignore[arg-type]


def _verified(e: Entry | None, st: os.stat_result) -> bool:
    return e is not None and e.state == DONE and e.same_version(st.st_size, st.st_mtime_ns)


def check_unit(ctx: IngestContext, zone: ZoneSpec, unit: str) -> str:
    """One look at a completed directory; what became of it (waiting, held, complete, gone)."""
    lock = FileLock(ctx.redis, ctx.ledger.prefix, zone.name, f"\0unit/{unit}")
    if not lock.acquire():
        return WAITING  # another worker is at it; its lease brings it back if that one is lost
    try:
        return _check(ctx, zone, unit)
    finally:
        lock.release()


def _check(ctx: IngestContext, zone: ZoneSpec, unit: str) -> str:
    r, p = ctx.redis, ctx.ledger.prefix
    info = units.info(r, p, zone.name, unit)
    if info is None:  # done meanwhile (a second job for it)
        r.zrem(units.pending_key(p, zone.name), os.fsencode(unit))
        return GONE
    if not os.path.isdir(os.path.join(zone.root, unit)):
        log.warning("zone %s: %s/ is gone before all of it was verified; forgotten", zone.name, unit,
                    extra={"fields": {"INGEST_ZONE": zone.name, "INGEST_PATH": os.path.join(zone.root, unit)}})
        units.forget(r, p, zone.name, unit)
        return GONE
    snap = dirmove.snapshot(zone, unit)
    names = _names(ctx, zone)
    marker = info.file if info.kind == "marker" else ""
    members, busy = {}, []
    for rel, st in snap.items():
        why = names.reason_to_skip(rel.rpartition("/")[2], rel)
        if why == "temporary":
            busy.append(rel)  # a copy tool's temporary name, or one of ours: something is at work here
        elif why is None and rel != marker:
            members[rel] = st
    rels = list(members)
    marker_here = [marker] if marker and marker in snap else []  # a marker that failed (a conflict) holds it too
    entries = dict(zip(rels + marker_here, ctx.ledger.get_many(zone.name, rels + marker_here), strict=True))
    failed = [rel for rel in rels + marker_here if (e := entries[rel]) is not None and e.state == FAILED
              and e.same_version(snap[rel].st_size, snap[rel].st_mtime_ns)]
    missing = _missing(zone, unit, info, snap)
    if failed or missing:
        return _hold(ctx, zone, unit, info, failed, missing)
    if busy or any(not _verified(entries[rel], members[rel]) for rel in rels):
        reason = "" if not busy else (
            f"waiting: {len(busy)} file{'' if len(busy) == 1 else 's'} under a temporary name in it "
            f"({', '.join(sorted(busy)[:3])}{' …' if len(busy) > 3 else ''}): a copy may still be at work")
        # a file arrived after all was verified: after_hold counts again from the next time
        if (info.state, info.reason, info.complete_at) != (WAITING, reason, 0.0):
            info.complete_at, info.state, info.reason = 0.0, WAITING, reason
            units.save_info(r, p, zone.name, unit, info)
            if busy:
                log.warning("zone %s: %s/ %s", zone.name, unit, reason,
                            extra={"fields": {"INGEST_ZONE": zone.name, "INGEST_PATH": os.path.join(zone.root, unit),
                                              "INGEST_RESULT": reason}})
        units.recheck_in(r, p, zone.name, unit, recheck_after(len(snap)))
        return WAITING
    if marker and zone.completion.marker_ingest == "last" and marker in snap:
        if not _verified(ctx.ledger.get(zone.name, marker), snap[marker]):
            st = snap[marker]
            res = ingest_file(ctx, zone, FileItem(marker, st.st_size, st.st_mtime_ns, unit=unit))
            if res.result not in (results.INGESTED, results.UPDATED, results.ALREADY):
                units.recheck_in(r, p, zone.name, unit, RECHECK)
                return WAITING
        members[marker] = snap[marker]
    if info.kind == "manifest" and zone.after != "keep" and (wrong := _against_listing(ctx, zone, unit, info, snap)):
        return _hold(ctx, zone, unit, info, wrong, [])
    if zone.after != "keep" and zone.after_hold > 0:
        now = time.time()
        if not info.complete_at:
            info.complete_at, info.state, info.reason = now, "complete", f"after = {zone.after} in {zone.after_hold:g}s"
            units.save_info(r, p, zone.name, unit, info)
        if now < info.complete_at + zone.after_hold:
            units.recheck_in(r, p, zone.name, unit, info.complete_at + zone.after_hold - now)
            return WAITING
    return _complete(ctx, zone, unit, info, members, snap)


def recheck_after(files: int) -> float:
    """Seconds until a directory still being ingested is looked at again: RECHECK, longer for a large one
    (100,000 files: 30 s), so the looks cost a few per cent of a worker whatever the directory's size."""
    return max(RECHECK, min(RECHECK_MAX, files * RECHECK_PER_FILE))


def _missing(zone: ZoneSpec, unit: str, info: units.UnitInfo, snap: dirmove.Snapshot) -> list[str]:
    if info.kind != "manifest":
        return []
    try:
        listed = manifest.read(os.path.join(zone.root, info.file))
    except (OSError, manifest.BadManifest) as e:
        return [f"{info.file} (the manifest: {e})"]
    return [f"{unit}/{rel}" for rel in listed if f"{unit}/{rel}" not in snap]


def _against_listing(ctx: IngestContext, zone: ZoneSpec, unit: str, info: units.UnitInfo,
                     snap: dirmove.Snapshot) -> list[str]:
    """Before anything of a manifest's set is passed on: each verified file against the SHA-256 its manifest
    lists now (one verified before its line was written: a manifest read while its writer paused, written again
    while the daemon was down). A file whose copy has another sum fails (kind manifest); those files."""
    try:
        listed = manifest.read(os.path.join(zone.root, info.file))
    except (OSError, manifest.BadManifest):
        return []  # said by _missing at the next look
    wrong = []
    for rel, v in units.held(ctx.redis, ctx.ledger.prefix, zone.name, unit).items():
        algo, want = manifest.split(listed.get(rel[len(unit) + 1:], ""))
        st = snap.get(rel)
        if algo == "sha256" and v.sha256 and v.sha256 != want and st is not None and v.same(st):
            reason = (f"manifest: sha256 mismatch: {info.file} lists {want}, the copy verified in iRODS has "
                      f"{v.sha256}; no file of its directory is moved or deleted")
            ctx.ledger.mark_failed(zone.name, rel, v.size, v.mtime_ns, reason, kind="manifest")
            notify.file_failed(notify.of(ctx.config, zone.name), zone.name, os.path.join(zone.root, rel),
                               names.target_for(zone.collection, rel).path, reason, "manifest", v.size, v.mtime_ns)
            log.error("zone %s: %s: %s", zone.name, rel, reason,
                      extra={"fields": {"INGEST_ZONE": zone.name, "INGEST_PATH": os.path.join(zone.root, rel),
                                        "INGEST_RESULT": "failed"}})
            wrong.append(rel)
    return wrong


def _hold(ctx: IngestContext, zone: ZoneSpec, unit: str, info: units.UnitInfo, failed: list[str],
          missing: list[str]) -> str:
    parts = []
    if failed:
        parts.append(f"{len(failed)} failed ({', '.join(sorted(failed)[:3])}{' …' if len(failed) > 3 else ''})")
    if missing:
        parts.append(f"{len(missing)} listed but missing ({', '.join(sorted(missing)[:3])}"
                     f"{' …' if len(missing) > 3 else ''})")
    info.complete_at = 0.0  # after_hold counts again once it is whole
    return _hold_move(ctx, zone, unit, info, f"{'; '.join(parts)}; none of its files is moved or deleted")


def _hold_move(ctx: IngestContext, zone: ZoneSpec, unit: str, info: units.UnitInfo, why: str) -> str:
    """Held with the reason (said once: its record, the journal), looked at again: a failed or missing file
    (_hold), or all of it verified but its place in move_to cannot take it."""
    reason = f"held: {why}"
    if (info.state, info.reason) != (HELD, reason):
        info.state, info.reason = HELD, reason
        units.save_info(ctx.redis, ctx.ledger.prefix, zone.name, unit, info)
        log.error("zone %s: %s/ %s", zone.name, unit, reason,
                  extra={"fields": {"INGEST_ZONE": zone.name, "INGEST_PATH": os.path.join(zone.root, unit),
                                    "INGEST_RESULT": reason}})
    units.recheck_in(ctx.redis, ctx.ledger.prefix, zone.name, unit, HELD_RECHECK)
    return HELD


def _complete(ctx: IngestContext, zone: ZoneSpec, unit: str, info: units.UnitInfo,
              members: dict[str, os.stat_result], snap: dirmove.Snapshot) -> str:
    r, p = ctx.redis, ctx.ledger.prefix
    held = units.held(r, p, zone.name, unit)
    verified = {rel: held.get(rel) or after.Verified(rel, st.st_size, st.st_mtime_ns, st.st_dev, st.st_ino, "")
                for rel, st in members.items()}  # no held record (lost): the ledger's verified version
    moved_to, tagged = "", False
    if zone.after == "move":
        from ..ingest.replicas import gates_disposal  # the access part's gate, when it has one

        by_file = gates_disposal(zone.access)
        if not by_file:
            outcome, why = dirmove.ready_to_move(zone, verified, snap)
            if outcome:
                units.recheck_in(r, p, zone.name, unit, RECHECK)
                reason = f"not moved yet: {why}"
                if info.reason != reason:  # said once (status, the journal), not at each look
                    info.reason = reason
                    units.save_info(r, p, zone.name, unit, info)
                    log.info("zone %s: %s/ %s", zone.name, unit, reason,
                             extra={"fields": {"INGEST_ZONE": zone.name, "INGEST_PATH": os.path.join(zone.root, unit),
                                               "INGEST_RESULT": reason}})
                return WAITING
            _tag_collection(ctx, zone, unit, info, members)  # before the landing set is passed on
            tagged = True
            outcome, where = dirmove.move(zone, unit, snap)
            if outcome == dirmove.LOOP:
                return _hold_move(ctx, zone, unit, info, where)
            if outcome == dirmove.MOVED:
                moved_to = where
                for v in verified.values():
                    ctx.ledger.drop_done(zone.name, v.rel, v.size, v.mtime_ns)
            else:
                log.warning("zone %s: %s/: %s", zone.name, unit, where)
                by_file = True
        if by_file:
            _by_file(ctx, zone, held)
    elif zone.after == "delete":
        _by_file(ctx, zone, held)
    if not tagged:
        _tag_collection(ctx, zone, unit, info, members)
    unit_complete(zone, CompletedUnit(
        zone=zone.name, unit=unit, path=os.path.join(zone.root, unit),
        collection=names.target_for(zone.collection, unit).path,
        kind=info.kind, file=info.file, files=len(members), bytes=sum(st.st_size for st in members.values()),
        moved_to=moved_to), notify.of(ctx.config, zone.name))
    if moved_to:
        units.forget(r, p, zone.name, unit)  # a directory of that name arriving later is a new one
    else:
        units.finish(r, p, zone.name, unit, info.file, info.dev, info.ino)
    return DONE_


def _tag_collection(ctx: IngestContext, zone: ZoneSpec, unit: str, info: units.UnitInfo,
                    members: dict[str, os.stat_result]) -> None:
    """The directory's collection says it is complete (completed.collection_avus), in one atomic call; an iRODS
    error raises, and the directory is looked at again (nothing of it was passed on yet)."""
    from ..ingest.usermeta import sync_collection

    file_in_unit = info.file[len(unit) + 1:] if info.file.startswith(unit + "/") else info.file
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    avus = collection_avus(info.kind, file_in_unit, len(members), sum(st.st_size for st in members.values()), when)
    sync_collection(ctx.sessions.get(), names.target_for(zone.collection, unit).path, avus)


def _by_file(ctx: IngestContext, zone: ZoneSpec, held: dict[str, after.Verified]) -> None:
    """Each verified file's own after-action, due now (the per-file checks, min_replicas included)."""
    for v in held.values():
        after.defer(ctx.redis, ctx.ledger.prefix, zone.name, v, 0.0)
