"""The fault campaign's oracle: what must be true of iRODS, the landing zones and RQ once it drained.

Independent of the package's own bookkeeping: the expected set is what the campaign wrote (relative path,
size, SHA-256 computed while writing), and the facts are read from iRODS (python-irodsclient GenQuery over
the campaign's collection, and the bytes of each replica's physical file), from the landing directories
and from RQ's registries (read without cleanup, so the campaign never does the daemon's repair work).

Same-name files (a file ingested, then a different one under the same name; versions = "keep") are given
as every version in the order written: the newest must be at the name, version k of n (k < n) at
`<name>.~k~` (irods_ingestd.ingest keeps an earlier object that way), every one exactly once, and those
`.~k~` objects are expected, not extra. In `delete` and `move` zones the landing file must be gone once
its object is right (moved to `move_to` for `move`), and never gone while it is not.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PART_SUFFIXES = (".part",)  # irods_ingestd.names: .<name>.ingestd-<tag>.part and -old.part
# irods_ingestd.after: the private names a delete/move takes a landing file to while it acts on it
AFTER_PRIVATE = (".*.ingestd-del.??????", ".*.ingestd-move.??????", ".ingestd-del.??????", ".ingestd-move.??????")
A_SUPERSEDED = "ingestd::superseded"


@dataclass(frozen=True)
class Expected:
    zone: str
    rel: str
    size: int
    sha256: bytes

    @property
    def checksum(self) -> str:
        return "sha2:" + base64.b64encode(self.sha256).decode()


@dataclass
class ZoneLayout:
    name: str
    landing: Path
    collection: str
    after: str = "keep"  # keep | move | delete
    move_to: Path | None = None

    @property
    def removes(self) -> bool:
        """The landing file goes once its copy is verified (delete, move)."""
        return self.after in ("delete", "move")


@dataclass
class Obj:
    path: str
    size: int
    checksum: str
    replica_status: str
    phys: str


@dataclass
class Findings:
    files: int = 0
    present_ok: int = 0
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)
    stray: list[str] = field(default_factory=list)  # temporary objects left behind
    extra: list[str] = field(default_factory=list)  # objects nobody wrote
    removed_unverified: list[str] = field(default_factory=list)  # landing file gone, object not right
    after_pending: list[str] = field(default_factory=list)  # verified, but still in the landing zone
    versions: int = 0  # earlier versions of same-name files expected as <name>.~k~
    versions_ok: int = 0
    versions_unmarked: list[str] = field(default_factory=list)  # kept without ingestd::superseded (info)
    leftovers: list[str] = field(default_factory=list)  # landing files left under an after-action's private name
    unexpected: list[str] = field(default_factory=list)  # files in delete/move landing or move_to nobody wrote
    landing_changed: list[str] = field(default_factory=list)  # kept landing file not what was written
    failed_listed: list[str] = field(default_factory=list)  # in the ledger's failed list
    jobs_started: int = 0
    jobs_waiting: int = 0
    jobs_failed: int = 0

    def problems(self) -> list[str]:
        out = []
        for name in ("lost", "duplicated", "wrong", "stray", "extra", "removed_unverified", "after_pending",
                     "landing_changed", "leftovers", "unexpected"):
            items = getattr(self, name)
            if items:
                out.append(f"{name}: {len(items)} (e.g. {', '.join(items[:5])})")
        if self.jobs_started:
            out.append(f"jobs stuck in RQ's started registry: {self.jobs_started}")
        if self.jobs_waiting:
            out.append(f"jobs still waiting in the queue: {self.jobs_waiting}")
        return out


def sha256_file(path: str | Path) -> bytes:
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(8 << 20):
            h.update(chunk)
    return h.digest()


def list_objects(session: Any, root: str) -> list[Obj]:
    """Every data object (every replica row) at or below the collection root."""
    from irods.column import Like
    from irods.models import Collection, DataObject

    q = session.query(Collection.name, DataObject.name, DataObject.size, DataObject.checksum,
                      DataObject.replica_status, DataObject.path).filter(Like(Collection.name, root + "%"))
    out = []
    for row in q:
        coll = row[Collection.name]
        if coll != root and not coll.startswith(root + "/"):
            continue
        out.append(Obj(f"{coll}/{row[DataObject.name]}", int(row[DataObject.size] or 0),
                       row[DataObject.checksum] or "", str(row[DataObject.replica_status]), row[DataObject.path] or ""))
    return out


def target(z: ZoneLayout, rel: str) -> str:
    return f"{z.collection}/{rel}"


def version_path(path: str, k: int) -> str:
    """Where irods_ingestd keeps the k-th earlier object of a name (versions = "keep")."""
    return f"{path}.~{k}~"


Versions = dict[tuple[str, str], list[Expected]]  # (zone, rel) → every version written, oldest first


def earlier_versions(zones: dict[str, ZoneLayout], versions: Versions | None) -> dict[str, Expected]:
    """`<path>.~k~` → the version expected there (all but the newest of each same-name file)."""
    out: dict[str, Expected] = {}
    for (zone, rel), vs in (versions or {}).items():
        base = target(zones[zone], rel)
        for k, e in enumerate(vs[:-1], 1):
            out[version_path(base, k)] = e
    return out


def _family(path: str, objs_by_path: dict[str, Obj]) -> list[Obj]:
    """The object at path and every `path.~N~` there is."""
    return [o for p, o in objs_by_path.items() if p == path or (p.startswith(path + ".~") and p.endswith("~"))]


def quick_state(objs: list[Obj], expected: list[Expected], zones: dict[str, ZoneLayout],
                failed: dict[str, set[str]], versions: Versions | None = None) -> tuple[int, int]:
    """(files and earlier versions done or listed failed, those not yet) from the catalog and the landing
    zones, cheaply. A file of a delete or move zone is done when its landing file is gone too."""
    by_path = {o.path: o for o in objs}
    done = 0
    for e in expected:
        z = zones[e.zone]
        if e.rel in failed.get(e.zone, set()):
            done += 1
            continue
        o = by_path.get(target(z, e.rel))
        if o is None or o.checksum != e.checksum or o.replica_status != "1":
            continue
        if z.removes and os.path.lexists(z.landing / e.rel):
            continue
        done += 1
    older = earlier_versions(zones, versions)
    for path, e in older.items():
        o = by_path.get(path)
        if o is not None and o.checksum == e.checksum and o.replica_status == "1":
            done += 1
    return done, len(expected) + len(older) - done


def _check_object(f: Findings, o: Obj, e: Expected, path: str, read_bytes: bool) -> bool:
    """Size, catalog checksum, replica status and stored bytes of one object; True if all right."""
    bad = []
    if o.size != e.size:
        bad.append(f"size {o.size} != {e.size}")
    if o.checksum != e.checksum:
        bad.append(f"catalog checksum {o.checksum or 'none'} != {e.checksum}")
    if o.replica_status != "1":
        bad.append(f"replica status {o.replica_status}")
    if read_bytes and o.phys and os.path.exists(o.phys):
        if sha256_file(o.phys) != e.sha256:
            bad.append("stored bytes differ from what was written")
    elif read_bytes:
        bad.append(f"physical file {o.phys or '?'} missing")
    if bad:
        f.wrong.append(f"{path}: {'; '.join(bad)}")
    return not bad


def verify(objs: list[Obj], expected: list[Expected], zones: dict[str, ZoneLayout], root: str,
           read_bytes: bool = True, versions: Versions | None = None,
           superseded: set[str] | None = None) -> Findings:
    """Everything the campaign wrote against iRODS and the landing zones. `superseded`: the objects that
    carry ingestd::superseded (None: not looked at)."""
    f = Findings(files=len(expected))
    rows = Counter(o.path for o in objs)
    by_path: dict[str, Obj] = {o.path: o for o in objs}
    by_sum = Counter(o.checksum for o in objs if o.checksum)
    want = {target(zones[e.zone], e.rel): e for e in expected}
    older = earlier_versions(zones, versions)
    f.versions = len(older)
    unique_content = Counter(e.checksum for e in list(want.values()) + list(older.values()))
    earlier_sums = {target(zones[zone], rel): {e.checksum for e in vs[:-1]}
                    for (zone, rel), vs in (versions or {}).items()}

    def duplicates(path: str, e: Expected) -> None:
        if rows[path] > 1:
            f.duplicated.append(f"{path} ({rows[path]} replicas)")
        # the same content under another name (a unique file ingested twice)
        if e.size > 0 and unique_content[e.checksum] == 1 and by_sum[e.checksum] > 1:
            f.duplicated.append(f"{path} (its content is in {by_sum[e.checksum]} objects)")

    for path, e in sorted(want.items()):
        z = zones[e.zone]
        o = by_path.get(path)
        ok = False
        if o is None:
            f.lost.append(path)
        elif o.checksum != e.checksum and not by_sum[e.checksum] and o.checksum in earlier_sums.get(path, ()):
            # the name still holds an earlier version and this one is in no object: lost, not merely wrong
            f.lost.append(f"{path} (the newest version, in no object; the name holds an earlier one)")
        else:
            ok = _check_object(f, o, e, path, read_bytes)
            f.present_ok += ok
            duplicates(path, e)
        landing = z.landing / e.rel
        if z.after == "keep":
            if not os.path.lexists(landing):
                f.removed_unverified.append(f"{z.name}:{e.rel} (after = keep, landing file gone)")
            elif read_bytes and sha256_file(landing) != e.sha256:
                f.landing_changed.append(f"{z.name}:{e.rel}")
            continue
        if os.path.lexists(landing):
            if ok:
                f.after_pending.append(f"{z.name}:{e.rel}")
        elif not ok:
            f.removed_unverified.append(f"{z.name}:{e.rel} (landing file {z.after}d, object not right)")
        if z.after == "move":
            assert z.move_to is not None
            moved = z.move_to / e.rel
            if os.path.lexists(moved):
                if read_bytes and sha256_file(moved) != e.sha256:
                    f.landing_changed.append(f"{z.name}:{e.rel} (moved copy differs)")
            elif not os.path.lexists(landing):
                f.removed_unverified.append(f"{z.name}:{e.rel} (neither in the landing zone nor in move_to)")

    for path, e in sorted(older.items()):
        o = by_path.get(path)
        if o is None:
            base = path[:path.rindex(".~")]
            elsewhere = [x.path for x in _family(base, by_path) if x.checksum == e.checksum]
            if elsewhere:
                f.wrong.append(f"{path}: this version is at {', '.join(elsewhere)} instead")
            else:  # its landing file was deleted (or replaced) after the campaign saw it verified
                f.lost.append(f"{path} (an earlier version of {base})")
            continue
        if _check_object(f, o, e, path, read_bytes):
            f.versions_ok += 1
        duplicates(path, e)
        if superseded is not None and path not in superseded:
            f.versions_unmarked.append(path)

    for path in sorted(rows):
        if path in want or path in older:
            continue
        name = path.rpartition("/")[2]
        if ".ingestd-" in name and name.endswith(PART_SUFFIXES):
            f.stray.append(path)
        else:
            f.extra.append(path)
    f.leftovers, f.unexpected = after_leftovers(zones, expected)
    return f


def after_leftovers(zones: dict[str, ZoneLayout], expected: list[Expected]) -> tuple[list[str], list[str]]:
    """In the landing and move_to directories of delete and move zones: (files under an after-action's
    private name: a delete or move that took a file aside and never finished, never ingested since the
    names are reserved; files the campaign never wrote there: a file put back or moved under another name,
    or moved twice)."""
    leftovers, unexpected = [], []
    for z in zones.values():
        if not z.removes:
            continue
        rels = {e.rel for e in expected if e.zone == z.name}
        for top in (z.landing, z.move_to):
            if top is None or not top.is_dir():
                continue
            for d, _dirs, files in os.walk(top):
                for n in files:
                    path = os.path.join(d, n)
                    if any(fnmatch.fnmatchcase(n, pat) for pat in AFTER_PRIVATE):
                        leftovers.append(path)
                    elif os.path.relpath(path, top) not in rels:
                        unexpected.append(path)
    return sorted(leftovers), sorted(unexpected)


def superseded_objects(session: Any, root: str) -> set[str]:
    """The objects at or below root that carry ingestd::superseded (kept earlier versions)."""
    from irods.column import Like
    from irods.models import Collection, DataObject, DataObjectMeta

    q = session.query(Collection.name, DataObject.name).filter(Like(Collection.name, root + "%")) \
        .filter(DataObjectMeta.name == A_SUPERSEDED)
    return {f"{row[Collection.name]}/{row[DataObject.name]}" for row in q}
