"""Where a file came from: host, landing path, zone, size, mtime, when, by which version.

Measured on a real iRODS 5.0.2 (4 sessions, 4 KiB files): the atomic metadata call costs about as much as
the put itself, whatever the number of AVUs in it (1 AVU ≈ 7 AVUs), so the set stays whole.
"""

from __future__ import annotations

from datetime import UTC, datetime

from irods.meta import iRODSMeta

from ... import __version__, names
from ...job import FileItem, ZoneSpec
from ..metadata import (
    A_INGEST_TIME,
    A_MTIME,
    A_ORIGINAL_NAME,
    A_SIZE,
    A_SOURCE_HOST,
    A_SOURCE_PATH,
    A_VERSION,
    A_ZONE,
    source_path,
)


def avus(zone: ZoneSpec, item: FileItem, target: names.Target, host: str) -> list[iRODSMeta]:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    out = [
        iRODSMeta(A_SOURCE_HOST, host),
        iRODSMeta(A_SOURCE_PATH, source_path(zone, item.rel)),
        iRODSMeta(A_ZONE, zone.name),
        iRODSMeta(A_SIZE, str(item.size), "bytes"),
        iRODSMeta(A_MTIME, str(item.mtime_ns), "ns"),
        iRODSMeta(A_INGEST_TIME, now),
        iRODSMeta(A_VERSION, __version__),
    ]
    if target.mapped:
        out.append(iRODSMeta(A_ORIGINAL_NAME, names.original_name_value(item.rel), "hex"))
    return out
