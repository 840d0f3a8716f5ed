"""What iRODS would do with the files of a plan (`irods-ingestd plan`): read-only look-ups, never a write.

The targets of a step of the walk are looked up with one GenQuery per collection (per ~2 kB of names, as the
worker's batch look-up does: `catalog.lookup`), the object and the version an interrupted update set aside.
An object under the name is judged by the function the worker judges it with (`ingest/judge.py`):

- the same size and the catalog's checksum matches the landing file (read here, in the server's scheme):
  *present*, recorded without moving a byte;
- otherwise its AVUs (`catalog.object_avus`) and its replicas' paths decide (`judge.judge`): an object this zone made
  from this landing path is an *update*: the previous object kept as `<name>.~N~` (`versions = "keep"`, N
  from the same query the worker makes), replaced (`"replace"`, and every register zone), or a *conflict*
  (`"conflict"`); an object anything else made is a *conflict*: the file would fail, nothing overwritten.

No checksum is ever asked of the server (DATA_OBJ_CHKSUM stores one when the catalog has none: a write):
an object of the same size without a checksum in the catalog is said to be decided by the server's.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from irods.models import Collection

from . import names
from .ingest import catalog, local, transfer
from .ingest import judge as verdicts
from .ingest.batch import look_up_by_collection
from .ingest.catalog import Obj
from .ingest.errors import LocalChanged, NotRegular, PermanentError, Vanished
from .job import FileItem, ZoneSpec
from .planner import CONFLICT, EXCLUDED, INGEST, PRESENT, SETTLING, UPDATE, Item
from .zone import Zone

log = logging.getLogger("irods_ingestd.plan")


class IrodsReach:
    """A session opened lazily; the first failure is kept (said once) and no further call is made."""

    def __init__(self, make: Callable[[], Any] | None) -> None:
        self._make = make
        self.session: Any = None
        self.error: str | None = None if make is not None else "not configured"

    def get(self) -> Any:
        if self.error is not None:
            return None
        if self.session is None and self._make is not None:
            try:
                self.session = self._make()
            except Exception as e:  # noqa: BLE001 - said as it is; the plan goes on without iRODS
                self.lost(e)
        return self.session

    def lost(self, e: Exception) -> None:
        if self.error is None:
            self.error = f"{type(e).__name__}: {e}".rstrip(": ")
            log.debug("iRODS look-ups stop: %s", self.error)

    def close(self) -> None:
        if self.session is not None:
            try:
                self.session.cleanup()
            except Exception:  # noqa: BLE001,S110 - closing a dead session is fine either way
                pass
            self.session = None


def judge(reach: IrodsReach, zone: Zone, items: list[Item]) -> None:
    """Fill in `irods` (and, for ready files, `action`, `reason`) of the files that would be sent."""
    todo = [it for it in items if it.action in (INGEST, SETTLING) and it.target]
    if not todo:
        return
    session = reach.get()
    if session is None:
        for it in todo:
            it.reason = _join(it.reason, f"iRODS not asked ({reach.error})")
        return
    by_coll: dict[str, list[tuple[Item, names.Target]]] = {}
    for it in todo:
        t = names.target_for(zone.cfg.collection, it.rel)
        by_coll.setdefault(t.collection, []).append((it, t))
    try:
        for coll, pairs in by_coll.items():
            found: dict[str, Obj] = {}
            for _, chunk_found in look_up_by_collection(session, coll, [t for _, t in pairs],
                                                        lambda t: (t.name, t.old_name)):
                found.update(chunk_found)
            blocked = _object_above(session, coll)
            subcolls: set[str] | None = None
            for it, t in pairs:
                obj = found.get(t.name) or found.get(t.old_name)  # an update interrupted between its renames
                if blocked:
                    verdict, why = CONFLICT, (f"the collection {coll} cannot be made: {blocked} is a data object (a "
                                              "landing file ingested there is a directory now): the file would fail")
                elif obj is None:
                    subcolls = _subcollections(session, coll) if subcolls is None else subcolls
                    verdict, why = (CONFLICT, f"{t.path} is a collection (a landing directory ingested there is a "
                                    "file now): the file would fail, nothing overwritten") if t.path in subcolls \
                        else (INGEST, f"new in iRODS ({_where(zone)})")
                else:
                    verdict, why = _existing(session, zone, it, t, obj)
                _apply(it, verdict, why)
                it.would_fail = it.would_fail or why.endswith(_NO_ROOM)
                if zone.cfg.mode == "register" and verdict in (INGEST, UPDATE):
                    _refused(session, zone, it)
    except Exception as e:  # noqa: BLE001 - iRODS went away mid-plan: say so, list the rest unchecked
        reach.lost(e)
        for it in todo:
            if not it.irods:
                it.reason = _join(it.reason, f"iRODS not asked ({reach.error})")


def _refused(session: Any, zone: Zone, it: Item) -> None:
    """A file the worker would refuse to register (inside a resource's vault: transfer.register_refusal)."""
    refusal = transfer.register_refusal(session, os.path.realpath(os.path.join(zone.cfg.path, it.rel)),
                                        zone.cfg.resource)
    if refusal:
        it.would_fail = True
        if it.action == SETTLING:
            it.reason = _join(it.reason, refusal)
        else:
            it.action, it.reason = EXCLUDED, refusal


def _subcollections(session: Any, coll: str) -> set[str]:
    q = session.query(Collection.name).filter(Collection.parent_name == coll)
    return {row[Collection.name] for row in q}


def _object_above(session: Any, coll: str) -> str:
    """The data object standing where coll or a collection above it would be made ('' if none): the worker
    cannot make the collection (CAT_NAME_EXISTS_AS_DATAOBJ)."""
    while coll.count("/") > 1 and not list(session.query(Collection.id).filter(Collection.name == coll)):
        parent, _, name = coll.rpartition("/")
        if catalog.lookup(session, parent, [name]):
            return coll
        coll = parent
    return ""


def _where(zone: Zone) -> str:
    c = zone.cfg
    return f"{c.mode} to {c.resource}" if c.resource else f"{c.mode}, default resource"


def _apply(it: Item, verdict: str, why: str) -> None:
    it.irods = verdict
    if it.action == SETTLING:
        it.reason = _join(it.reason, f"then: {verdict}: {why}")
    else:
        it.action, it.reason = verdict, why
    if verdict == CONFLICT:
        it.would_fail = True


def _join(a: str, b: str) -> str:
    return f"{a}; {b}" if a else b


_NO_ROOM = "a name longer than a vault file name may be: the file would fail"


def _existing(session: Any, zone: Zone, it: Item, t: names.Target, obj: Obj) -> tuple[str, str]:
    spec: ZoneSpec = zone.spec
    item = FileItem(it.rel, it.size or 0, it.mtime_ns or 0)
    desc = f"{obj.size} bytes, {obj.checksum or 'no checksum'}"
    if obj.size == item.size:
        if obj.checksum:
            if _same_content(spec, item, obj.checksum):
                return PRESENT, f"{t.path} already holds this content ({desc}): recorded without moving a byte"
        else:
            desc += "; same size, so the server's checksum decides whether it is this content"
    verdict = verdicts.judge(spec, item, t, False, catalog.object_avus(session, t.collection, obj.name), obj.paths)
    if verdict.verdict == verdicts.CONFLICT:
        return CONFLICT, f"{verdict.conflict_reason(t.path, desc)}: the file would fail, not overwritten"
    if verdict.update == verdicts.REREGISTERED:
        return UPDATE, f"a new version: the registration of {t.path} is replaced ({desc})"
    if verdict.update == verdicts.KEPT:
        n = catalog.last_version(session, t) + 1
        kept = f"{t.name}.~{n}~"
        if len(kept.encode()) > names.MAX_COMPONENT_BYTES:  # as the worker's set-aside finds (attempt.py)
            return UPDATE, f"a new version, but the previous object ({desc}) cannot be kept as {kept}: {_NO_ROOM}"
        return UPDATE, f"a new version: the previous object ({desc}) kept as {kept}"
    return UPDATE, f"a new version: the previous object ({desc}) replaced (versions = \"replace\")"


def _same_content(spec: ZoneSpec, item: FileItem, stored: str) -> bool:
    """Does the catalog's checksum match the landing file (read here, in the checksum's scheme)?"""
    try:
        loc = local.check_local(spec, item)
        dig = local.digest(loc, None)
        return local.compare(loc, dig, stored)[1]
    except (PermanentError, LocalChanged, Vanished, NotRegular, OSError):
        return False
