"""A zone's provenance on its collection (``provenance = "collection"``): which zone, from which hosts and
landing directory, by which versions, written once per worker process and zone instead of on every object.

Why: on the real iRODS 5.0.2 the metadata call costs about as much as the put itself, whatever the number of
AVUs in it (bench/README.md, "Where a file's time goes"), so the per-file provenance halves the put rate. With
this choice a file's own provenance is what the catalog already holds for it (its path below the zone's
collection is its landing path below the zone's directory; size, checksum and creation time are columns of
the object), plus the original name of a name that had to be mapped.
"""

from __future__ import annotations

from typing import Any

import irods.exception as iex
from irods.meta import AVUOperation, iRODSMeta
from irods.models import Collection, CollectionMeta

from .. import __version__
from ..job import ZoneSpec
from . import catalog
from .context import IngestContext
from .metadata import A_SOURCE_HOST, A_VERSION, A_ZONE, AVU_PREFIX

A_PROVENANCE = AVU_PREFIX + "provenance"  # "collection": the objects below carry no provenance AVUs
A_SOURCE_ROOT = AVU_PREFIX + "source_root"  # the zone's landing directory


def wanted(zone: ZoneSpec, host: str) -> list[iRODSMeta]:
    return [iRODSMeta(A_ZONE, zone.name), iRODSMeta(A_PROVENANCE, "collection"),
            iRODSMeta(A_SOURCE_ROOT, zone.root), iRODSMeta(A_SOURCE_HOST, host), iRODSMeta(A_VERSION, __version__)]


def collection_avus(session: Any, coll: str) -> set[tuple[str, str]]:
    q = session.query(CollectionMeta.name, CollectionMeta.value).filter(Collection.name == coll)
    return {(row[CollectionMeta.name] or "", row[CollectionMeta.value] or "") for row in q}


def ensure(ctx: IngestContext, session: Any, zone: ZoneSpec) -> None:
    """The zone's collection carries this worker's provenance (added, never replaced: every host and version
    that ingested into it stays listed). Once per process and zone; errors go to the caller's retries."""
    if zone.provenance != "collection" or zone.name in ctx.provenance_written:
        return
    catalog.ensure_collection(session, zone.collection, ctx.known_collections, ctx.sleep)
    want = wanted(zone, ctx.host)
    missing = [m for m in want if (m.name, m.value) not in collection_avus(session, zone.collection)]
    if missing:
        try:
            session.metadata.apply_atomic_operations(Collection, zone.collection,
                                                     *(AVUOperation(operation="add", avu=m) for m in missing))
        except iex.iRODSException:
            # another worker added some of them meanwhile: fine if all are there now
            have = collection_avus(session, zone.collection)
            if any((m.name, m.value) not in have for m in want):
                raise
    ctx.provenance_written.add(zone.name)
