"""Declarative metadata on its way to iRODS: a zone's sidecars read and checked on the worker, the per-file
AVUs as iRODSMeta (the extractors ``path`` and ``sidecar`` put them in the object's one atomic call), and a
directory sidecar's AVUs on its collection, once per collection and worker.

A problem with a user's metadata (a bad sidecar, a path the required regex does not match) fails the file
with :class:`BadMetadata` (kind ``metadata``) before anything of it is written to iRODS. A sidecar that cannot
be taken but changed in the last `SIDECAR_QUIET` seconds is taken as still being written: the file settles
again (LocalChanged) and is tried once the sidecar is quiet.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from irods.meta import AVUOperation, iRODSMeta
from irods.models import Collection, CollectionMeta

from .. import names, sidecars
from ..job import FileItem, ZoneSpec
from ..sidecars import SidecarError, Triple
from . import metadata
from .context import IngestContext
from .errors import LocalChanged, PermanentError

log = logging.getLogger("irods_ingestd.ingest")

SIDECAR_QUIET = 3.0  # seconds: a bad sidecar younger than this may still be being written
SYNC_TRIES = 3  # a directory sidecar changed while its collection was written: written again (at most)


class BadMetadata(PermanentError):
    """The file's metadata cannot be written as the zone says (the reason names the sidecar or the rule)."""

    kind = "metadata"


def metas(triples: list[Triple]) -> list[iRODSMeta]:
    return [iRODSMeta(a, v, u or None) for a, v, u in triples]


def _shown(zone: ZoneSpec, rel: str) -> str:
    return zone.root.rstrip("/") + "/" + names.display(rel)


def _read(zone: ZoneSpec, rel: str) -> tuple[list[Triple], os.stat_result] | None:
    path = os.path.join(zone.root, rel)
    try:
        return sidecars.read(path, zone.follow_symlinks)
    except SidecarError as e:
        try:  # an mtime further in the future (a clock ahead, `touch -d`, an archive's dates) is no writer at
            # work: taken as one, the file would settle again for ever, never failed and never ingested
            young = abs(time.time() - os.lstat(path).st_mtime) < SIDECAR_QUIET
        except OSError:
            young = True  # it went meanwhile: look again
        if young:
            log.info("sidecar %s changed just now and cannot be taken yet (%s): the file settles again",
                     _shown(zone, rel), e)
            raise LocalChanged() from None
        raise BadMetadata(f"sidecar {_shown(zone, rel)}: {e}") from None


def file_sidecar(zone: ZoneSpec, item: FileItem) -> list[Triple]:
    """The AVUs of the file's own sidecar ([] when it has none)."""
    got = _read(zone, sidecars.file_sidecar(zone.avus.sidecar, item.rel))
    return got[0] if got else []


def dir_sidecar(zone: ZoneSpec, item: FileItem) -> tuple[list[Triple], tuple[int, ...]] | None:
    """The AVUs of the sidecar of the file's directory and its identity (device, inode, size, mtime), or None."""
    if not zone.avus.dir_sidecar:
        return None
    got = _read(zone, sidecars.dir_sidecar(zone.avus.dir_sidecar, item.rel))
    if got is None:
        return None
    st = got[1]
    return got[0], (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def problem(zone: ZoneSpec, item: FileItem, target: names.Target) -> str | None:
    """Why the zone's metadata would fail this file (a bad sidecar of the file or its directory, a path the
    required path_regex does not match), or None: the dry run's look (a sidecar still being written: None)."""
    try:
        metadata.avus_for(zone, item, target, "")
        dir_sidecar(zone, item)
    except BadMetadata as e:
        return str(e)
    except (LocalChanged, OSError):
        return None
    return None


def _signature(zone: ZoneSpec, item: FileItem) -> tuple[int, ...] | None:
    try:
        st = os.stat(os.path.join(zone.root, sidecars.dir_sidecar(zone.avus.dir_sidecar, item.rel)),
                     follow_symlinks=zone.follow_symlinks)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def apply_dir_sidecar(ctx: IngestContext, session: Any, zone: ZoneSpec, item: FileItem, coll: str) -> None:
    """The AVUs of the file's directory sidecar on its collection `coll`, if not done by this worker for this
    version of the sidecar: for each attribute the sidecar names, the collection ends up with exactly the
    sidecar's values (others of that attribute removed, missing ones added, in one atomic call; nothing when
    it has them already). Attributes the sidecar does not name are left alone. A sidecar that changed while
    its AVUs were written is applied again: the last write is of the version on disk."""
    if not zone.avus.dir_sidecar:
        return
    sig = _signature(zone, item)
    if sig is not None and ctx.collection_avus.get(coll) == sig:
        return
    for _ in range(SYNC_TRIES):
        got = dir_sidecar(zone, item)
        if got is None:
            return
        triples, applied = got
        sync_collection(session, coll, triples)
        if _signature(zone, item) == applied:  # else it changed while this was written: another worker may
            break  # have applied the newer version before this older one landed, and would not look again
    ctx.collection_avus[coll] = applied


def sync_collection(session: Any, coll: str, triples: list[Triple]) -> int:
    """Make coll's AVUs of the attributes in `triples` exactly those; returns the number of changes."""
    want: dict[str, set[tuple[str, str]]] = {}
    for a, v, u in triples:
        want.setdefault(a, set()).add((v, u))
    have: set[Triple] = set()
    q = session.query(CollectionMeta.name, CollectionMeta.value, CollectionMeta.units).filter(Collection.name == coll)
    for row in q:
        a = row[CollectionMeta.name] or ""
        if a in want:
            have.add((a, row[CollectionMeta.value] or "", row[CollectionMeta.units] or ""))
    ops = [AVUOperation(operation="remove", avu=m) for m in metas(sorted(t for t in have if t[1:] not in want[t[0]]))]
    ops += [AVUOperation(operation="add", avu=m)
            for m in metas(sorted({t for t in triples if t not in have}))]
    if ops:  # adding an AVU that is there, or removing one that is not, is no error: racing workers are fine
        session.metadata.apply_atomic_operations(Collection, coll, *ops)
        log.debug("collection %s: %d AVU changes from its directory sidecar", coll, len(ops))
    return len(ops)
