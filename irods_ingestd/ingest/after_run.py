"""The after-action of a verified file, from the worker's side: now, or deferred by after_hold (the
daemon hands due ones back as ``tasks.after_batch`` jobs); the ledger entry goes when the file does."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from ..completion import units
from ..job import FileItem, ZoneSpec
from ..locks import FileLock
from . import after, replicas
from .context import IngestContext
from .metadata import source_path
from .results import FileResult

log = logging.getLogger("irods_ingestd.ingest")

RETRY_FAILED = 300.0  # seconds before an after-action that failed (an OSError) is tried again


def after_action(ctx: IngestContext, zone: ZoneSpec, item: FileItem, res: FileResult) -> str:
    """Run the zone's after-action on the verified file now, or defer it (after_hold, a writer still at it);
    '' or what to say about it. The ledger entry stays until the landing file is gone."""
    st = res.local_st
    if zone.after == "keep" or st is None:
        return ""
    v = after.Verified(item.rel, item.size, item.mtime_ns, st.st_dev, st.st_ino, res.digest.hex(),
                       st.st_ctime_ns)
    if item.unit is not None and units.hold(ctx.redis, ctx.ledger.prefix, zone.name, item.unit, v):
        return ""  # its directory's after-action, once all of it is verified (completion/check.py)
    if zone.after_hold > 0:
        after.defer(ctx.redis, ctx.ledger.prefix, zone.name, v, zone.after_hold)
        return ""
    return run_after(ctx, zone, v)


def run_after(ctx: IngestContext, zone: ZoneSpec, v: after.Verified, deferred: bool = False) -> str:
    # min_replicas: not before the object has them; deferred: not once it is gone from iRODS (held meanwhile)
    held = replicas.hold(ctx, zone, v, recheck=deferred)
    if held:
        return held
    outcome, reason = after.run(zone, v)
    if outcome in (after.DONE, after.GONE):
        ctx.ledger.drop_done(zone.name, v.rel, v.size, v.mtime_ns)
    elif outcome == after.CHANGED:  # another file under the name (maybe even of the same size and mtime):
        ctx.ledger.forget(zone.name, v.rel, v.size, v.mtime_ns, resettle=True)  # settle and copy it too
    if outcome == after.BUSY:
        delay = max(after.RETRY_BUSY, zone.after_hold)
        after.defer(ctx.redis, ctx.ledger.prefix, zone.name, v, delay)
        reason += f" (tried again in {delay:g}s)"
    elif outcome == after.FAILED:  # move_to not writable, full, a name too long there: the file stays and the
        # action is tried again (an operator may fix it), never dropped with the file left behind for good
        after.defer(ctx.redis, ctx.ledger.prefix, zone.name, v, max(RETRY_FAILED, zone.after_hold))
    else:  # ran, one way or another: it leaves the deferred set (a lost job's would come due again)
        after.settle_item(ctx.redis, ctx.ledger.prefix, zone.name, v)
    return "" if outcome == after.GONE else reason


def run_after_batch(ctx: IngestContext, zone: ZoneSpec, items: Iterable[after.Verified]) -> dict[str, int]:
    """The deferred after-actions the daemon handed back (tasks.after_batch): each under its file's lock."""
    counts = {"done": 0, "later": 0}
    for v in items:
        lock = FileLock(ctx.redis, ctx.ledger.prefix, zone.name, v.rel)
        if not lock.acquire():  # a new version is being ingested: try again shortly
            after.defer(ctx.redis, ctx.ledger.prefix, zone.name, v, after.RETRY_BUSY)
            counts["later"] += 1
            continue
        try:
            reason = run_after(ctx, zone, v, deferred=True)
        finally:
            lock.release()
        if reason:
            log.warning("%s: %s", source_path(zone, v.rel), reason,
                        extra={"fields": {"INGEST_ZONE": zone.name, "INGEST_PATH": source_path(zone, v.rel)}})
        counts["done" if not reason else "later"] += 1
    return counts
