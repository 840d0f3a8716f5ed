"""The one place where a directory is complete and verified: :func:`unit_complete`.

Called by the worker's unit check (:mod:`.check`) once every file of a marker/manifest directory is verified
in iRODS (the marker last, when it is ingested) and its after-action is done (the directory moved, its
deletes handed out), exactly once per completion. Notifications (webhooks, issue 15) hook in here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from .. import notify
from ..job import ZoneSpec
from ..zoneparts.notify import Notify

log = logging.getLogger("irods_ingestd.ingest")

UNIT_COMPLETE = "b967d071438c4cf5bc5e37d054d36c24"  # the journal's MESSAGE_ID of "a directory is complete and verified"


@dataclass(frozen=True)
class CompletedUnit:
    zone: str
    unit: str  # the directory, relative to the zone
    path: str  # where it was in the landing zone
    collection: str  # its collection in iRODS
    kind: str  # marker | manifest
    file: str  # the marker or manifest, relative to the zone
    files: int  # files verified in iRODS
    bytes: int
    moved_to: str = ""  # after = "move": where the directory went ('' otherwise)


A_COMPLETED = "ingestd::completed"  # when (UTC, ISO 8601) all of the directory was verified in iRODS
A_COMPLETED_BY = "ingestd::completed_by"  # "marker RTAComplete.txt", "manifest MANIFEST.sha256"
A_COMPLETED_FILES = "ingestd::completed_files"
A_COMPLETED_BYTES = "ingestd::completed_bytes"


def collection_avus(kind: str, file_in_unit: str, files: int, nbytes: int, when: str) -> list[tuple[str, str, str]]:
    """The AVUs a completed directory's collection gets (attribute, value, units): a pipeline finds complete
    runs by GenQuery on them."""
    return [(A_COMPLETED, when, ""), (A_COMPLETED_BY, f"{kind} {file_in_unit}", ""),
            (A_COMPLETED_FILES, str(files), ""), (A_COMPLETED_BYTES, str(nbytes), "")]


def unit_complete(zone: ZoneSpec, done: CompletedUnit, n: Notify) -> None:
    """A directory is complete and all of it verified (and moved, when after = "move"): the journal, and the
    zone's webhook (`n`: :func:`irods_ingestd.notify.of`) if it asks for "completed"."""
    where = f" and moved to {done.moved_to}" if done.moved_to else ""
    log.info("zone %s: %s/ is complete: %d files (%d bytes) verified in %s%s", zone.name, done.unit, done.files,
             done.bytes, done.collection, where,
             extra={"message_id": UNIT_COMPLETE,
                    "fields": {"INGEST_ZONE": zone.name, "INGEST_PATH": done.path, "IRODS_PATH": done.collection,
                               "INGEST_BYTES": done.bytes, "INGEST_RESULT": "directory complete"}})
    notify.completed(n, zone.name, done.path, done.collection, unit=done.unit, kind=done.kind, file=done.file,
                     files=done.files, bytes=done.bytes, moved_to=done.moved_to)
