"""AVUs from the file's JSON sidecar (the zone's `sidecar`, e.g. "{name}.metadata.json", beside the file):
the mapping is in :mod:`irods_ingestd.sidecars`. No sidecar, no AVUs; a sidecar that cannot be taken fails the
file, naming the sidecar and the problem, before anything of it is written to iRODS."""

from __future__ import annotations

from irods.meta import iRODSMeta

from ... import names
from ...job import FileItem, ZoneSpec
from ..usermeta import file_sidecar, metas


def avus(zone: ZoneSpec, item: FileItem, target: names.Target, host: str) -> list[iRODSMeta]:
    if not zone.avus.sidecar:
        return []
    return metas(file_sidecar(zone, item))
