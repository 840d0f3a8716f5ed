"""Sidecars ingested as objects too (``sidecar_ingest = true``) in a ``delete`` or ``move`` zone: a sidecar is
written before its file (as the README asks), so it settles and is verified first; were it deleted or moved
then, its file, still being written, would find no sidecar and go in without its AVUs. So the after-action
leaves a sidecar alone while the file that takes its AVUs from it is in its directory; its ledger entry goes
as after a delete, so the walk finds it again (already in iRODS: nothing copied) and, once that file is gone
(ingested and deleted or moved itself), its own after-action runs.

A directory's sidecar needs no such wait: ingested as an object, it gives its AVUs to its collection itself."""

from __future__ import annotations

import logging
import os
import stat

from ..job import ZoneSpec

log = logging.getLogger(__name__)


def _data_name(pattern: str, name: str) -> str | None:
    """The file name whose sidecar `name` is by the pattern ("{name}.metadata.json"), or None."""
    head, _, tail = pattern.partition("{name}")
    if len(name) > len(head) + len(tail) and name.startswith(head) and name.endswith(tail):
        return name[len(head):len(name) - len(tail)]
    return None


def needed_by(zone: ZoneSpec, rel: str) -> str | None:
    """The landing file (relative) that still takes its AVUs from the sidecar `rel`, or None."""
    cfg = zone.avus
    if not cfg.sidecar_ingest or zone.after not in ("delete", "move"):
        return None
    d, _, name = rel.rpartition("/")
    folder = os.path.join(zone.root, d) if d else zone.root
    data = _data_name(cfg.sidecar, name) if cfg.sidecar else None
    if data is None:
        return None
    try:
        st = os.lstat(os.path.join(folder, data))
    except OSError:
        return None
    if stat.S_ISDIR(st.st_mode):  # a directory takes no AVUs from a file sidecar: it would be held for ever
        return None
    return f"{d}/{data}" if d else data


def hold(zone: ZoneSpec, rel: str) -> bool:
    """Leave this sidecar where it is for now (logged)?"""
    user = needed_by(zone, rel)
    if user is None:
        return False
    log.info("zone %s: %s not %sd yet: %s takes its AVUs from it (the next walk looks again)",
             zone.name, rel, zone.after, user)
    return True
