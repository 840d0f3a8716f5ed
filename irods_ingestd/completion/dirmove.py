"""``after = "move"`` of a whole completed directory: renamed below ``move_to`` (keeping its path relative to the
zone) once every file of it is verified, with the care a single file's move takes:

* every file is the verified one (device, inode, size, mtime as verified), and none is open for writing
  on this host: else nothing moves (looked at again later);
* the directory never overwrites anything in ``move_to``: a name already taken gets ``name.~N~``, unless it is a
  directory holding none of the names of the one moved (a run below it moved there first, with its own marker):
  then the entries go into it, each never over anything;
* a file that slipped into the directory between the last look and the rename (it is not one looked at)
  is put back where it was in the landing zone, to be ingested like any new file;
* never into a directory of ``move_to`` that leads back into the zone (a symlink made there later): held;
* where one rename cannot do it (``move_to`` on another device), the files are moved one by one by the
  per-file move, which copies and checks each against its verified SHA-256.
"""

from __future__ import annotations

import logging
import os
import stat

from .. import fsops
from ..ingest.after import Verified, put_back
from ..job import ZoneSpec

log = logging.getLogger("irods_ingestd.ingest")

MOVED, BUSY, CHANGED, BY_FILE, LOOP = "moved", "busy", "changed", "by-file", "loop"
Snapshot = dict[str, os.stat_result]  # path relative to the zone → its stat (every regular file of the unit)


def snapshot(zone: ZoneSpec, unit: str) -> Snapshot:
    """Every regular file below the unit's directory (symlinks not followed: they move as links)."""
    out: Snapshot = {}
    stack = [unit]
    while stack:
        d = stack.pop()
        with os.scandir(os.path.join(zone.root, d)) as it:
            for e in it:
                rel = f"{d}/{e.name}"
                st = e.stat(follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    stack.append(rel)
                elif stat.S_ISREG(st.st_mode):
                    out[rel] = st
    return out


def _key(st: os.stat_result) -> tuple[int, int, int, int]:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def ready_to_move(zone: ZoneSpec, members: dict[str, Verified], snap: Snapshot) -> tuple[str, str]:
    """('', '') when the directory may move: each member is its verified file, no file open for writing."""
    for rel, v in members.items():
        st = snap.get(rel)
        if st is None or not v.same(st):
            return CHANGED, f"{rel} changed after it was verified"
    for rel in snap:
        if fsops.open_for_writing(os.path.join(zone.root, rel)):
            return BUSY, f"{rel} is still open for writing"
    return "", ""


def move(zone: ZoneSpec, unit: str, snap: Snapshot) -> tuple[str, str]:
    """Rename the unit's directory below move_to: (MOVED, where), (BY_FILE, why) or (LOOP, why): its place in
    move_to leads back into the zone (nothing moved)."""
    assert zone.move_to
    src = os.path.join(zone.root, unit)
    dest = os.path.join(zone.move_to, unit)
    real, root = os.path.realpath(os.path.dirname(dest)), os.path.realpath(zone.root)
    if real == root or real.startswith(root.rstrip(os.sep) + os.sep):  # a symlink made below move_to later
        return LOOP, f"{os.path.dirname(dest)} leads back into the zone (to {real}): not moved there"
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    entries: list[str] | None = None
    try:
        if _mergeable(src, dest):
            entries = _merge(src, dest)
            target = dest
        else:
            target = fsops.rename_to_free_name(src, dest)
    except FileExistsError:  # no free numbered name left
        raise
    except OSError as e:  # another device (EXDEV), or no rename-without-replace for directories here
        return BY_FILE, f"the directory cannot be renamed into move_to ({e.strerror or e}): moved file by file"
    _put_back_strays(zone, unit, target, snap, entries)
    return MOVED, target


def _mergeable(src: str, dest: str) -> bool:
    """`dest` is a directory holding none of the names in `src` (a nested run moved there before this one)."""
    try:
        if not stat.S_ISDIR(os.lstat(dest).st_mode):
            return False
    except FileNotFoundError:
        return False
    return not any(os.path.lexists(os.path.join(dest, name)) for name in os.listdir(src))


def _merge(src: str, dest: str) -> list[str]:
    """Each entry of `src` renamed into `dest` (a name taken meanwhile: name.~N~), then `src` removed if empty
    (a file that arrived meanwhile keeps it, to be ingested); the names moved."""
    moved = []
    for name in os.listdir(src):
        fsops.rename_to_free_name(os.path.join(src, name), os.path.join(dest, name))
        moved.append(name)
    try:
        os.rmdir(src)
    except OSError:
        pass
    return moved


def _put_back_strays(zone: ZoneSpec, unit: str, target: str, snap: Snapshot, entries: list[str] | None) -> None:
    """Files that arrived between the last look and the rename go back to the landing zone (only below the
    `entries` moved into an existing directory, when not None)."""
    known = {_key(st) for st in snap.values()}
    moved = snapshot(ZoneSpec(zone.name, os.path.dirname(target), zone.collection), os.path.basename(target))
    for rel, st in moved.items():
        sub = rel.partition("/")[2]
        if _key(st) in known or (entries is not None and sub.partition("/")[0] not in entries):
            continue
        home = os.path.join(zone.root, unit, sub)
        os.makedirs(os.path.dirname(home), exist_ok=True)
        back = put_back(os.path.join(os.path.dirname(target), rel), home)
        log.warning("zone %s: %s arrived while %s/ was being moved; put back as %s to be ingested", zone.name,
                    sub, unit, back, extra={"fields": {"INGEST_ZONE": zone.name, "INGEST_PATH": back}})
