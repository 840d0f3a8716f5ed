"""A batch of files, one at a time: each under its Redis lock, with retries, a ledger record and one
journal line; then its after-action.

Transient errors (network, iRODS down, SYS_* errors, timeouts) are retried with exponential backoff, the
session reset between attempts; past the retries the file is handed back to be queued again (until
``[queue].give_up_after``); permanent ones (conflict, permissions, unreadable local file) fail at once with
``ledger.mark_failed``. A worker whose lock expired writes nothing more about the file.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from rq.timeouts import JobTimeoutException

from .. import metrics, names, notify
from ..irods_session import SessionError, login_refused
from ..job import Batch, FileItem, ZoneSpec
from ..locks import FileLock
from ..messages import MessageId
from . import attempt as attempt_mod
from . import bulk, catalog
from .after_run import after_action
from .catalog import Obj
from .context import IngestContext
from .errors import (
    LocalChanged,
    LockLost,
    NotRegular,
    PermanentError,
    StaleLookup,
    Vanished,
    backoff_delay,
    describe,
    is_transient,
)
from .metadata import source_path
from .results import (
    ALREADY,
    CHANGED,
    DEFERRED,
    FAILED,
    INGESTED,
    LOCKED,
    LOST,
    NOT_REGULAR,
    SUMMARY_KEYS,
    UPDATED,
    VANISHED,
    FileResult,
    done,
    log,
)

LOOKUP_CHUNK_BYTES = 2000  # names in one GenQuery `in (...)` condition, kept short for any server


def ingest_file(ctx: IngestContext, zone: ZoneSpec, item: FileItem, retries: int | None = None) -> FileResult:
    """Ingest one file with its lock, retries and ledger record; returns what happened (never raises for
    the file's own problems)."""
    retries = ctx.config.queue.retries if retries is None else retries
    res = FileResult(item.rel, FAILED, nbytes=item.size)
    t0 = time.monotonic()
    try:
        target = names.target_for(zone.collection, item.rel)
        res.irods_path = target.path
    except names.BadName as e:
        return _fail(ctx, zone, item, res, f"bad name: {e}", "permanent", t0)

    lock = FileLock(ctx.redis, ctx.ledger.prefix, zone.name, item.rel)
    if not lock.acquire():
        ctx.ledger.forget(zone.name, item.rel, item.size, item.mtime_ns, resettle=True)
        res.result = LOCKED
        return done(zone, item, res, t0, logging.INFO, MessageId.FILE_SKIPPED)
    try:
        out = _attempts(ctx, zone, item, target, res, retries, t0, lock)
        if out is not None:
            return out
        res.reason = after_action(ctx, zone, item, res) if res.result in (INGESTED, UPDATED, ALREADY) else ""
    except LockLost:
        res.result, res.reason = LOST, "the lock expired meanwhile: another worker has the file"
        return done(zone, item, res, t0, logging.WARNING, MessageId.FILE_SKIPPED)
    finally:
        lock.release()
    mid = MessageId.FILE_SKIPPED if res.result == ALREADY else MessageId.FILE_INGESTED
    return done(zone, item, res, t0, logging.WARNING if res.reason else logging.INFO, mid)


def _skip(ctx: IngestContext, zone: ZoneSpec, item: FileItem, res: FileResult, result: str, t0: float,
          resettle: bool = False, level: int = logging.INFO) -> FileResult:
    ctx.ledger.forget(zone.name, item.rel, item.size, item.mtime_ns, resettle=resettle)
    res.result = result
    return done(zone, item, res, t0, level, MessageId.FILE_SKIPPED)


def _attempts(ctx: IngestContext, zone: ZoneSpec, item: FileItem, target: names.Target, res: FileResult,
              retries: int, t0: float, lock: FileLock) -> FileResult | None:
    """Try until done (None: res.result says how; the ledger has it) or a final answer (returned)."""
    attempt = 0
    session: Any = None
    while True:
        try:
            session = ctx.sessions.get()
            res.result = attempt_mod.attempt(ctx, session, zone, item, target, res, lock)
            attempt_mod.still_mine(lock)
            if not ctx.ledger.mark_done(zone.name, item.rel, item.size, item.mtime_ns, res.digest):
                log.debug("a newer version of %s was queued meanwhile", item.rel)
            return None
        except StaleLookup:
            continue  # the next attempt looks the object up afresh (the prefetched entry is gone)
        except (LockLost, SessionError, JobTimeoutException):
            raise  # SessionError: the worker's configuration, not this file; a timed-out job: fail the job, keep
            # the files queued (the reaper retries the job, then lists its files as failed)
        except LocalChanged:
            attempt_mod.still_mine(lock)
            return _skip(ctx, zone, item, res, CHANGED, t0, resettle=True)
        except Vanished:
            attempt_mod.still_mine(lock)
            _drop_part(ctx, session, target)
            return _skip(ctx, zone, item, res, VANISHED, t0)
        except NotRegular:
            attempt_mod.still_mine(lock)
            return _skip(ctx, zone, item, res, NOT_REGULAR, t0, level=logging.WARNING)
        except PermanentError as e:
            attempt_mod.still_mine(lock)
            return _fail(ctx, zone, item, res, str(e), e.kind, t0)
        except Exception as err:  # noqa: BLE001 - classified below
            attempt_mod.still_mine(lock)
            exc: Exception = login_refused(err, session) or err  # the account's login, not this file's
            if not is_transient(exc):
                return _fail(ctx, zone, item, res, describe(exc), "permanent", t0)
            ctx.sessions.reset()
            ctx.known_collections.clear()
            ctx.collection_avus.clear()  # a collection removed meanwhile is made again: its sidecar AVUs too
            if attempt >= retries:
                return _give_back(ctx, zone, item, res, f"{describe(exc)} (after {attempt + 1} attempts)", t0)
            delay = backoff_delay(ctx.config.queue, attempt)
            log.warning("transient error on %s (attempt %d of %d), retrying in %.1fs: %s",
                        res.irods_path, attempt + 1, retries + 1, delay, describe(exc))
            attempt += 1
            ctx.sleep(delay)


def _drop_part(ctx: IngestContext, session: Any, target: names.Target) -> None:
    """A vanished file's temporary copy left by an earlier try (a worker killed in the middle of the copy)
    would stay in iRODS for ever: nothing will ever try this file again. Removed if the batch's look-up (or
    one of its own) finds it; under the file's lock, so no other worker is copying it."""
    try:
        found = ctx.prefetched.get((target.collection, target.name))
        if found is None:
            found = catalog.lookup(session or ctx.sessions.get(), target.collection, [target.part_name])
        if target.part_name in found:
            catalog.unlink_quiet(session or ctx.sessions.get(), target.part_path)
            log.info("removed %s, the temporary copy of an interrupted earlier try", target.part_path)
    except Exception as e:  # noqa: BLE001 - iRODS away: the next try at a file of this name removes it
        log.debug("could not look for a temporary copy of %s: %s", target.path, describe(e))


def _give_back(ctx: IngestContext, zone: ZoneSpec, item: FileItem, res: FileResult, reason: str,
               t0: float) -> FileResult:
    """A transient error outlasted the retries (iRODS down for an upgrade, a database restart): the file
    goes back to the daemon to be queued again, until it has been failing for `give_up_after`; only then
    is it listed as failed."""
    first = ctx.ledger.note_transient(zone.name, item.rel)
    if time.time() - first < ctx.config.queue.give_up_after:
        ctx.ledger.forget(zone.name, item.rel, item.size, item.mtime_ns, resettle=True)
        res.result, res.reason = DEFERRED, reason
        return done(zone, item, res, t0, logging.WARNING, MessageId.FILE_SKIPPED)
    ctx.ledger.clear_transient(zone.name, item.rel)
    return _fail(ctx, zone, item, res, f"{reason}; failing for {ctx.config.queue.give_up_after:g}s",
                 "transient", t0)


def _fail(ctx: IngestContext, zone: ZoneSpec, item: FileItem, res: FileResult, reason: str, kind: str,
          t0: float) -> FileResult:
    res.result = FAILED
    res.reason = reason
    ctx.ledger.mark_failed(zone.name, item.rel, item.size, item.mtime_ns, reason, kind)
    notify.file_failed(notify.of(ctx.config, zone.name), zone.name, source_path(zone, item.rel), res.irods_path,
                       reason, kind, item.size, item.mtime_ns)
    return done(zone, item, res, t0, logging.ERROR, MessageId.FILE_FAILED)


def ingest_batch(ctx: IngestContext, batch: Batch) -> dict[str, int]:
    """Every file of a batch; a summary of counts (and bytes moved)."""
    summary = {k: 0 for k in SUMMARY_KEYS.values()}
    summary["bytes"] = 0
    prefetch(ctx, batch)
    down = False  # after one file ran out of retries, do not wait again on every other file of the batch
    files = list(batch.files)
    for start in range(0, len(files), bulk.BULK_ROWS):
        chunk = files[start:start + bulk.BULK_ROWS]
        in_bulk = {} if down else _in_bulk(ctx, batch.zone, chunk)
        for item in chunk:
            res = in_bulk.get(item.rel) or ingest_file(ctx, batch.zone, item, retries=0 if down else None)
            down = res.result == DEFERRED or (res.result == FAILED and res.reason.endswith("attempts)"))
            summary[SUMMARY_KEYS[res.result]] += 1
            metrics.file_done(batch.zone.name, SUMMARY_KEYS[res.result], item.size, item.mtime_ns, batch.queued_at)
            summary["bytes"] += res.moved_bytes
    return summary


def _in_bulk(ctx: IngestContext, zone: ZoneSpec, chunk: list[FileItem]) -> dict[str, FileResult]:
    """The chunk's files registered in bulk (register zones). iRODS away (or failing) before or during the
    bulk call fails no job: the files go the one-call way, which retries each and hands it back (a row the
    server did register is found there, already present)."""
    try:
        return {r.rel: r for r in bulk.register_batch(ctx, zone, chunk)}
    except Exception as e:  # noqa: BLE001 - classified here
        if not is_transient(e):
            raise
        log.warning("zone %s: bulk register of %d files failed (%s); registering them one by one", zone.name,
                    len(chunk), describe(e))
        ctx.sessions.reset()
        return {}


def look_up_by_collection(session: Any, coll: str, targets: list[names.Target],
                          names_of: Callable[[names.Target], tuple[str, ...]]
                          ) -> Iterator[tuple[list[names.Target], dict[str, Obj]]]:
    """The names of `targets` (all in `coll`; `names_of` each: the object and its temporary or set-aside
    names) looked up with one GenQuery per ~LOOKUP_CHUNK_BYTES of names: each chunk with what it found.
    Shared by the worker's batch look-up (`prefetch`) and the plan's (`plan_irods.py`)."""
    chunk: list[names.Target] = []
    wanted: list[str] = []
    size = 0
    for t in targets:
        if size >= LOOKUP_CHUNK_BYTES:
            yield chunk, catalog.lookup(session, coll, wanted)
            chunk, wanted, size = [], [], 0
        ns = names_of(t)
        chunk.append(t)
        wanted += ns
        size += len(ns) * len(t.name.encode("utf-8", "surrogateescape")) + 10 * (len(ns) + 1)
    yield chunk, catalog.lookup(session, coll, wanted)


def prefetch(ctx: IngestContext, batch: Batch) -> None:
    """One GenQuery per collection (per ~2 kB of names) for the whole batch instead of one per file.
    What it finds is used once per file; anything that goes wrong here just leaves the per-file look-up."""
    ctx.prefetched.clear()
    by_coll: dict[str, list[names.Target]] = {}
    for item in batch.files:
        try:
            t = names.target_for(batch.zone.collection, item.rel)
        except names.BadName:
            continue
        by_coll.setdefault(t.collection, []).append(t)
    if sum(len(ts) for ts in by_coll.values()) < 2:
        return
    try:
        session = ctx.sessions.get()
        for coll, targets in by_coll.items():
            for chunk, found in look_up_by_collection(session, coll, targets, _three):
                for c in chunk:
                    ctx.prefetched[(coll, c.name)] = {n: found[n] for n in _three(c) if n in found}
    except Exception as e:  # noqa: BLE001 - the per-file path looks again and handles the error properly
        log.debug("batch look-up failed, looking up file by file: %s", e)
        ctx.prefetched.clear()


def _three(t: names.Target) -> tuple[str, ...]:
    return t.name, t.part_name, t.old_name
