"""AVUs: the names irods-ingestd writes, which of an object's AVUs say it made it, and the zone's AVUs
gathered from its extractors (:mod:`irods_ingestd.registry`)."""

from __future__ import annotations

import os
from collections.abc import Iterable

from irods.meta import iRODSMeta

from .. import names, registry
from ..job import FileItem, ZoneSpec

AVU_PREFIX = "ingestd::"
A_SOURCE_HOST = AVU_PREFIX + "source_host"
A_SOURCE_PATH = AVU_PREFIX + "source_path"
A_SIZE = AVU_PREFIX + "size"
A_MTIME = AVU_PREFIX + "mtime"
A_INGEST_TIME = AVU_PREFIX + "ingest_time"
A_ZONE = AVU_PREFIX + "zone"
A_VERSION = AVU_PREFIX + "version"
A_ORIGINAL_NAME = AVU_PREFIX + "original_name"
A_SUPERSEDED = AVU_PREFIX + "superseded"  # on a previous version kept as <name>.~N~: when it was replaced


def source_path(zone: ZoneSpec, rel: str) -> str:
    """The landing file as logs and AVUs name it (valid UTF-8: mapped components)."""
    return zone.root.rstrip("/") + "/" + names.display(rel)


def avus_for(zone: ZoneSpec, item: FileItem, target: names.Target, host: str) -> list[iRODSMeta]:
    """Every AVU the zone's extractors give this file: the provenance (with ``provenance = "object"``, the
    default: it is how irods-ingestd recognises its own objects; with ``"collection"`` only a mapped name's
    original, the rest is on the zone's collection: :mod:`.zone_provenance`), then the zone's `metadata`
    extractors."""
    out: list[iRODSMeta] = []
    first = ("provenance",) if zone.provenance == "object" else ()
    if zone.provenance != "object" and target.mapped:
        out.append(iRODSMeta(A_ORIGINAL_NAME, names.original_name_value(item.rel), "hex"))
    for name in dict.fromkeys((*first, *zone.metadata, *zone.avus.extractors())):
        out += registry.load(registry.EXTRACTORS, name).avus(zone, item, target, host)
    return out


def made_by_us(avus: dict[str, str], zone: ZoneSpec, item: FileItem, target: names.Target,
               paths: Iterable[str] = ()) -> bool:
    """Do an object's AVUs say this zone made it from this very landing path? With ``provenance =
    "collection"`` objects carry none: in a register zone an object is the zone's when it points into the
    zone's directory (`paths`: its replicas' physical paths); in a put zone the collection is the zone's, and an
    object there without another file's provenance is taken as an earlier version (kept as name.~N~, or a
    conflict: check-config refuses ``versions = "replace"`` with it, so such an object is never destroyed).
    In a register zone, an object without provenance pointing at this very landing file is the zone's too: its
    registration was interrupted before the AVU call."""
    if zone.provenance == "collection" and A_ZONE not in avus and A_SOURCE_PATH not in avus:
        if zone.mode == "register":
            root = os.path.realpath(zone.root).rstrip("/") + "/"
            return any(p.startswith(root) for p in paths)
        return True
    if zone.mode == "register" and A_ZONE not in avus and A_SOURCE_PATH not in avus and \
            os.path.realpath(os.path.join(zone.root, item.rel)) in paths:
        return True  # registered from this very file and interrupted before its AVUs (a bulk call, then a kill)
    if avus.get(A_ZONE) != zone.name or avus.get(A_SOURCE_PATH) != source_path(zone, item.rel):
        return False
    original = avus.get(A_ORIGINAL_NAME)
    return original == names.original_name_value(item.rel) if target.mapped else original is None
