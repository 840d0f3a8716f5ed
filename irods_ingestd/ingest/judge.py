"""The judgement of an object found under a landing file's name, in one place: the worker acts on it
(`attempt.py`), `irods-ingestd plan` reports it (`plan_irods.py`), so the plan cannot say other than what
the worker would do.

Given whether the object holds the landing file's content, and otherwise its AVUs: *present* (nothing to
move), an *update* of this zone's earlier version of this very file (kept as ``<name>.~N~``, replaced, or
re-registered, per the zone's ``versions`` and ``mode``), or a *conflict* (another file's object, or
anything irods-ingestd did not make; or ``versions = "conflict"``): the file fails, nothing is overwritten.
Pure: no iRODS call is made here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .. import names
from ..job import FileItem, ZoneSpec
from .metadata import A_ORIGINAL_NAME, A_SOURCE_PATH, A_ZONE, made_by_us

PRESENT = "present"
UPDATE = "update"
CONFLICT = "conflict"

# how an update puts the earlier version away
KEPT = "kept"  # renamed to <name>.~N~ (versions = "keep")
REPLACED = "replaced"  # removed once the new one is in place (versions = "replace")
REREGISTERED = "reregistered"  # register mode: the registration is replaced

# why a conflict
OTHERS = "others"  # the object is another file's, or not irods-ingestd's
EARLIER = "earlier"  # an earlier version of this file, and versions = "conflict"


@dataclass(frozen=True, slots=True)
class Judgement:
    verdict: str  # PRESENT | UPDATE | CONFLICT
    update: str = ""  # UPDATE: KEPT | REPLACED | REREGISTERED
    conflict: str = ""  # CONFLICT: OTHERS | EARLIER
    made_by: str = ""  # OTHERS: who made the object, as a reason says it

    def conflict_reason(self, path: str, desc: str) -> str:
        """What a conflict is, naming the object (`desc`: its size and checksum), without the outcome."""
        if self.conflict == OTHERS:
            return f"{path} exists with other content ({desc}), {self.made_by}"
        return f"{path} holds an earlier version of this file ({desc}); versions = \"conflict\""


def judge(zone: ZoneSpec, item: FileItem, target: names.Target, same: bool,
          avus: Mapping[str, str] | None = None, paths: Iterable[str] = ()) -> Judgement:
    """`same`: the object holds the landing file's content; else `avus` (the object's) and `paths` (its
    replicas' physical paths) decide whether it is this zone's earlier version of this file."""
    if same:
        return Judgement(PRESENT)
    avus = dict(avus or {})
    if not made_by_us(avus, zone, item, target, paths):
        who = avus.get(A_SOURCE_PATH)
        by = f"made from {who} in zone {avus.get(A_ZONE)}" if who else "not made by irods-ingestd"
        if who and avus.get(A_ORIGINAL_NAME):  # two landing names, one iRODS name: say which one made it
            try:
                by += f" (landing name {bytes.fromhex(avus[A_ORIGINAL_NAME])!r} before mapping)"
            except ValueError:
                pass
        return Judgement(CONFLICT, conflict=OTHERS, made_by=by)
    if zone.mode == "register":
        return Judgement(UPDATE, update=REREGISTERED)
    if zone.versions == "conflict":
        return Judgement(CONFLICT, conflict=EARLIER)
    return Judgement(UPDATE, update=KEPT if zone.versions == "keep" else REPLACED)
