"""The fault campaign's oracle: what must be true of iRODS, the landing zones and RQ once it drained.

Independent of the package's own bookkeeping: the expected set is what the campaign wrote (relative path,
size, SHA-256 computed while writing), and the facts are read from iRODS (python-irodsclient GenQuery over
the campaign's collection, and the bytes of each replica's physical file), from the landing directories
and from RQ's registries (read without cleanup, so the campaign never does the daemon's repair work).
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PART_SUFFIXES = (".part",)  # irods_ingestd.names: .<name>.ingestd-<tag>.part and -old.part


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
    after: str = "keep"  # keep | move
    move_to: Path | None = None


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
    landing_changed: list[str] = field(default_factory=list)  # kept landing file not what was written
    failed_listed: list[str] = field(default_factory=list)  # in the ledger's failed list
    jobs_started: int = 0
    jobs_waiting: int = 0
    jobs_failed: int = 0

    def problems(self) -> list[str]:
        out = []
        for name in ("lost", "duplicated", "wrong", "stray", "extra", "removed_unverified", "after_pending",
                     "landing_changed"):
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


def quick_state(objs: list[Obj], expected: list[Expected], zones: dict[str, ZoneLayout],
                failed: dict[str, set[str]]) -> tuple[int, int]:
    """(files done or listed failed, files not yet) from the catalog and the landing zones, cheaply."""
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
        if z.after == "move" and os.path.lexists(z.landing / e.rel):
            continue
        done += 1
    return done, len(expected) - done


def verify(objs: list[Obj], expected: list[Expected], zones: dict[str, ZoneLayout], root: str,
           read_bytes: bool = True) -> Findings:
    f = Findings(files=len(expected))
    rows = Counter(o.path for o in objs)
    by_path: dict[str, Obj] = {o.path: o for o in objs}
    by_sum = Counter(o.checksum for o in objs if o.checksum)
    want = {target(zones[e.zone], e.rel): e for e in expected}
    unique_content = Counter(e.checksum for e in expected)
    for path, e in sorted(want.items()):
        z = zones[e.zone]
        o = by_path.get(path)
        ok = False
        if o is None:
            f.lost.append(path)
        else:
            bad = []
            if rows[path] > 1:
                f.duplicated.append(f"{path} ({rows[path]} replicas)")
            if o.size != e.size:
                bad.append(f"size {o.size} != {e.size}")
            if o.checksum != e.checksum:
                bad.append(f"catalog checksum {o.checksum or 'none'} != {e.checksum}")
            if o.replica_status != "1":
                bad.append(f"replica status {o.replica_status}")
            if read_bytes and o.phys and os.path.exists(o.phys):
                got = sha256_file(o.phys)
                if got != e.sha256:
                    bad.append("stored bytes differ from what was written")
            elif read_bytes:
                bad.append(f"physical file {o.phys or '?'} missing")
            if bad:
                f.wrong.append(f"{path}: {'; '.join(bad)}")
            else:
                ok = True
                f.present_ok += 1
            # the same content under another name (a unique file ingested twice)
            if e.size > 0 and unique_content[e.checksum] == 1 and by_sum[e.checksum] > 1:
                f.duplicated.append(f"{path} (its content is in {by_sum[e.checksum]} objects)")
        landing = z.landing / e.rel
        if z.after == "keep":
            if not os.path.lexists(landing):
                f.removed_unverified.append(f"{z.name}:{e.rel} (after = keep, landing file gone)")
            elif read_bytes and sha256_file(landing) != e.sha256:
                f.landing_changed.append(f"{z.name}:{e.rel}")
        else:
            assert z.move_to is not None
            moved = z.move_to / e.rel
            if os.path.lexists(landing):
                if ok:
                    f.after_pending.append(f"{z.name}:{e.rel}")
            elif not ok:
                f.removed_unverified.append(f"{z.name}:{e.rel} (landing file moved/removed, object not right)")
            if os.path.lexists(moved):
                if read_bytes and sha256_file(moved) != e.sha256:
                    f.landing_changed.append(f"{z.name}:{e.rel} (moved copy differs)")
            elif not os.path.lexists(landing):
                f.removed_unverified.append(f"{z.name}:{e.rel} (neither in the landing zone nor in move_to)")
    for path in sorted(rows):
        if path in want:
            continue
        name = path.rpartition("/")[2]
        if ".ingestd-" in name and name.endswith(PART_SUFFIXES):
            f.stray.append(path)
        else:
            f.extra.append(path)
    return f
