"""One try at one file: look at what iRODS holds under its name, judge it, transfer, put it in place.

1. The landing file is still the job's version (:func:`local.check_local`); the collection exists.
2. Look at the target, its temporary copy and a version set aside (the batch's one query per collection,
   or a query of its own). A version set aside without a final object (an update interrupted between its
   two renames) is renamed back first; a leftover temporary copy is removed (its tagged name says it is
   this object's: see :mod:`irods_ingestd.names`).
3. The target exists: same size and checksum as the local file → done without moving a byte
   ("already-present"). Other content whose AVUs say this zone's file made it → an update (per the zone's
   ``versions``); anything else is a conflict: fail with the reason, never overwrite.
4. ``put``: copy to the temporary name, verify, AVUs (:func:`transfer.put`), then rename onto the final
   name; an update first renames the old object to ``<name>.~N~`` (``versions = "keep"``) or sets it aside
   and removes it once the new one is in (``replace``). So the final name only ever holds a verified,
   complete copy with its metadata. ``register``: register in place and verify (:func:`transfer.register`).
"""

from __future__ import annotations

import errno
import os
from typing import Any

import irods.exception as iex

from .. import names
from ..checksums import Digest
from ..completion import verify as completion_verify
from ..job import FileItem, ZoneSpec
from ..locks import FileLock
from . import access, catalog, judge, local, metadata, transfer, usermeta, zone_provenance
from .catalog import Obj
from .context import IngestContext
from .errors import Conflict, LockLost, PermanentError, StaleLookup, unix_errno
from .local import Local
from .results import ALREADY, INGESTED, UPDATED, FileResult


def still_mine(lock: FileLock | None) -> None:
    if lock is not None and not lock.still_held():
        raise LockLost()


def attempt(ctx: IngestContext, session: Any, zone: ZoneSpec, item: FileItem, target: names.Target,
            res: FileResult, lock: FileLock | None = None) -> str:
    """One try at one file; returns INGESTED, UPDATED or ALREADY, or raises."""
    loc = local.check_local(zone, item)
    res.local_st = loc.st
    zone_provenance.ensure(ctx, session, zone)
    access.prepare(ctx, session, zone)
    catalog.ensure_collection(session, target.collection, ctx.known_collections, ctx.sleep)
    objs, prefetched = _look(ctx, session, zone, target)
    existing = objs.get(target.name)
    dig: Digest | None = None
    if existing is not None:
        dig, same = _judge(ctx, session, zone, item, target, loc, existing)
        if same and dig is not None:
            completion_verify.check(item, dig, loc)  # a manifest's sum: the object already there must have it
            res.digest = dig.sha256
            access.grant(session, zone, target.path)  # an earlier try may have stopped before its ACLs
            return ALREADY
    update = existing is not None
    opts: dict[str, str] = {"destRescName": zone.resource} if zone.resource else {}
    avus = metadata.avus_for(zone, item, target, ctx.host)
    usermeta.apply_dir_sidecar(ctx, session, zone, item, target.collection)
    if zone.mode == "register":
        out = _register(ctx, session, zone, loc, target, existing, dig, opts, avus, res, prefetched)
        access.grant(session, zone, target.path)
        return out
    dig, res.moved_bytes = transfer.put(ctx, session, item.size, loc, target.part_path, opts, avus)
    _expected(session, item, dig, loc, target)
    access.grant_part(session, zone, target.part_path)  # the ACLs are there before the final name
    res.digest = dig.sha256
    still_mine(lock)
    return _place(session, zone, target, update, prefetched, res)


def _expected(session: Any, item: FileItem, dig: Digest, loc: local.Local, target: names.Target) -> None:
    """The copy must have the sum its manifest lists (completion/verify.py); else it is removed, never placed."""
    try:
        completion_verify.check(item, dig, loc)
    except BaseException:
        catalog.unlink_quiet(session, target.part_path)
        raise


def _look(ctx: IngestContext, session: Any, zone: ZoneSpec, target: names.Target) -> tuple[dict[str, Obj], bool]:
    part, old = target.part_name, target.old_name
    objs = ctx.prefetched.pop((target.collection, target.name), None)
    prefetched = objs is not None
    if objs is None:
        objs = catalog.lookup(session, target.collection, [target.name, part, old])
    if target.name not in objs and old in objs:
        # an update was interrupted between its two renames: put the previous version back first
        catalog.rename(session, target.old_path, target.path)
        objs[target.name] = objs.pop(old)
        objs[target.name].name = target.name
    if part in objs:
        catalog.unlink_quiet(session, target.part_path)
        if target.name not in objs and zone.versions == "keep":
            _mark_interrupted_update(session, target)
    if old in objs:
        catalog.unlink_quiet(session, target.old_path)
    return objs, prefetched


def _mark_interrupted_update(session: Any, target: names.Target) -> None:
    """A copy left under its temporary name and nothing under the name: maybe an update stopped between
    setting the earlier version aside (name.~N~) and placing the new copy. The version set aside gets the
    superseded AVU that update would have given it (a version that has one keeps it)."""
    n = catalog.last_version(session, target)
    if n and metadata.A_SUPERSEDED not in catalog.object_avus(session, target.collection, f"{target.name}.~{n}~"):
        catalog.mark_superseded(session, f"{target.path}.~{n}~")


def _judge(ctx: IngestContext, session: Any, zone: ZoneSpec, item: FileItem, target: names.Target, loc: Local,
           existing: Obj) -> tuple[Digest | None, bool]:
    """The object under the name: the same content (digest, True), an earlier version of this very file
    (digest or None, False), or a conflict (raised): decided by `judge.judge`, as the plan decides it."""
    dig: Digest | None = None
    if existing.size == item.size:
        stored = existing.checksum or catalog.server_checksum(session, target.path)
        dig, same = transfer.verify(ctx, loc, local.digest(loc, ctx.hash_scheme), stored)
        if same:
            local.recheck(loc)
            if zone.mode == "register" and os.path.realpath(loc.path) in existing.paths:
                _complete_tags(ctx, session, zone, item, target)
            return dig, True
    avus = catalog.object_avus(session, target.collection, target.name)
    verdict = judge.judge(zone, item, target, False, avus, existing.paths)
    if verdict.verdict == judge.CONFLICT:
        why = verdict.conflict_reason(target.path, f"{existing.size} bytes, {existing.checksum or 'no checksum'}")
        raise Conflict(f"conflict: {why}{'; ' if verdict.conflict == judge.OTHERS else ': '}not overwritten")
    return dig, False


def _complete_tags(ctx: IngestContext, session: Any, zone: ZoneSpec, item: FileItem, target: names.Target) -> None:
    """An object registered from this very file, maybe interrupted before its AVU call (one atomic call: all of
    them or none): add what it lacks. A sidecar gone bad since does not fail an object already tagged (its AVUs
    went in with the sidecar as it was, and a changed sidecar changes nothing in iRODS)."""
    present = catalog.object_avus(session, target.collection, target.name, prefix="")
    try:
        expected = metadata.avus_for(zone, item, target, ctx.host)
    except usermeta.BadMetadata:
        if present:
            return
        raise
    if missing := transfer.missing_avus(expected, present):
        transfer.tag_registered(session, target.path, missing)


_IS_COLLECTION = "conflict: {} is a collection (a landing directory ingested there is a file now); nothing overwritten"


def _register(ctx: IngestContext, session: Any, zone: ZoneSpec, loc: Local, target: names.Target,
              existing: Obj | None, dig: Digest | None, opts: dict[str, str], avus: list[Any], res: FileResult,
              prefetched: bool) -> str:
    realpath = os.path.realpath(loc.path)
    refusal = transfer.register_refusal(session, realpath, zone.resource)
    if refusal:
        raise PermanentError(refusal)
    here = existing is not None and realpath in existing.paths
    aside = None
    if existing is not None and not here:  # another path registered under the name: set it aside
        catalog.rename(session, target.path, target.old_path)
        aside = target.old_path
    try:
        dig = transfer.register(ctx, session, loc, target.path, aside, here, dig, opts, avus, zone)
    except iex.CAT_NAME_EXISTS_AS_COLLECTION:
        raise Conflict(_IS_COLLECTION.format(target.path)) from None
    except iex.CATALOG_ALREADY_HAS_ITEM_BY_THAT_NAME:
        if prefetched and aside is None:  # the batch's look-up is older than this file's lock: look again
            raise StaleLookup() from None
        raise
    res.digest = dig.sha256
    if aside:
        catalog.unlink_quiet(session, target.old_path)
    res.moved_bytes = 0
    return UPDATED if existing is not None else INGESTED


def _set_aside_version(session: Any, target: names.Target) -> str:
    try:
        return catalog.set_aside_version(session, target)
    except iex.UNIX_FILE_RENAME_ERR as e:
        if unix_errno(e) != errno.ENAMETOOLONG:
            raise
        catalog.unlink_quiet(session, target.part_path)  # the earlier version stays as it was
        raise PermanentError(
            f"the earlier version of {target.path} cannot be kept as {target.name}.~N~: a name longer than the "
            f"{names.MAX_COMPONENT_BYTES} bytes a file name in the resource's vault may have (rename the file, "
            "or set versions = \"replace\" for the zone)") from None


def _place(session: Any, zone: ZoneSpec, target: names.Target, update: bool, prefetched: bool,
           res: FileResult) -> str:
    """Rename the verified temporary copy onto the final name (setting an earlier version aside first)."""
    if update:
        keep = zone.versions == "keep"
        if keep:
            aside = _set_aside_version(session, target)
        else:
            catalog.rename(session, target.path, target.old_path)
            aside = target.old_path
        try:
            catalog.rename(session, target.part_path, target.path)
        except BaseException:
            catalog.rename(session, aside, target.path)
            raise
        if keep:
            res.kept_as = aside
            catalog.mark_superseded(session, aside)
        else:
            catalog.unlink_quiet(session, target.old_path)
        return UPDATED
    try:
        catalog.rename(session, target.part_path, target.path)
    except iex.CAT_NAME_EXISTS_AS_COLLECTION:
        catalog.unlink_quiet(session, target.part_path)
        raise Conflict(_IS_COLLECTION.format(target.path)) from None
    except iex.CAT_NAME_EXISTS_AS_DATAOBJ:
        catalog.unlink_quiet(session, target.part_path)
        if prefetched:  # the batch's look-up is older than this file's lock: look again before judging
            raise StaleLookup() from None
        raise Conflict(f"conflict: {target.path} was created by someone else during the copy; "
                       f"not overwritten") from None
    return INGESTED
