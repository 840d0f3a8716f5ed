"""The fanotify backend: one notification group for all zones, one mark per filesystem holding zones.

`fanotify_init(FAN_CLASS_NOTIF | FAN_REPORT_DFID_NAME)` and `fanotify_mark(FAN_MARK_FILESYSTEM)` (Linux ≥
5.9, CAP_SYS_ADMIN) report every directory entry change on a filesystem as (directory file handle, name),
with no watch per directory and no `fs.inotify.max_user_watches` to run out of. The mark sees the whole
filesystem, so events are filtered strictly: a directory is ours only if a walk of its zone is about to
list it (`watch_dir` learns its handle with `name_to_handle_at`, as inotify's backend places a watch).
An event from any other directory is one failed dict look-up; no handle is ever opened, so
`open_by_handle_at` and CAP_DAC_READ_SEARCH (which would let the daemon read every file on the machine)
are not needed. The map follows moves as inotify's does: a directory moved away drops its subtree, one
moved in is walked (and so learned) again.

The kernel merges the events of one name in one directory until they are read (a file created, written
and renamed away is one event with CREATE | CLOSE_WRITE | MOVED_FROM): a mask that says both "here" and
"gone" becomes GONE then ARRIVED, so the zone forgets what it knew and looks at the file again.

A dedicated thread blocks in `read()` and hands parsed events to the `Inbox`; the main loop translates
them with `changes()`. An overflow (`FAN_Q_OVERFLOW`, the group's queue of `fs.fanotify.max_queued_events`
is full) is reported as inotify's is, and the zones are walked.
"""

from __future__ import annotations

import errno
import logging
import os
import select
from typing import Any

from ..config import ZoneConfig
from . import fanotify_sys as S
from .api import Change, Inbox, Kind
from .common import DirWatcher

log = logging.getLogger(__name__)

_HERE = S.FAN_CREATE | S.FAN_CLOSE_WRITE | S.FAN_ATTRIB | S.FAN_MOVED_TO
_GONE = S.FAN_DELETE | S.FAN_MOVED_FROM
_READ_SIZE = 1 << 18


class FanotifyWatcher(DirWatcher[bytes]):
    name = "fanotify"
    limit_what = "fanotify could not mark a filesystem of the zone (it is walked instead of watched)"

    def __init__(self, inbox: Inbox) -> None:
        if not S.has_sys_admin():  # select.py logs it and polls the zone instead
            raise OSError(errno.EPERM, "CAP_SYS_ADMIN is missing (a filesystem mark needs it)")
        super().__init__(inbox)
        self._fd = S.init()  # OSError (EINVAL: a kernel before 5.9): polled instead, likewise
        self._poller = select.poll()
        self._poller.register(self._fd, select.POLLIN)
        self._marks: dict[bytes, tuple[str, set[str]]] = {}  # fsid → (path marked through, zones on it)
        self._root_at: dict[tuple[bytes, str], str] = {}  # (parent key, name) of a zone root → zone
        self.events = 0  # events read (all of the filesystem's, ours or not)
        self.foreign = 0  # of which outside every zone
        self._thread.start()

    def _read(self) -> list[Any]:
        if not self._poller.poll(500):
            return []
        return S.parse(os.read(self._fd, _READ_SIZE))

    def _close_source(self) -> None:
        os.close(self._fd)

    # -- zones and directories --------------------------------------------------------------------------
    def _mark(self, zone: str, path: str) -> bytes | None:
        """The fsid of the filesystem holding `path`, marked for `zone` (once per filesystem); None if
        it cannot be marked: the zone is then walked every poll_interval (`limit_hit`)."""
        try:
            fsid = S.fsid_of(path)
            mark = self._marks.get(fsid)
            if mark is None:
                S.mark_filesystem(self._fd, path)
                mark = self._marks[fsid] = (path, set())
                log.info("fanotify: marked the filesystem of %s (zone %s)", path, zone)
            mark[1].add(zone)
            return fsid
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ENOTDIR):
                return None  # gone: the zone is lost, or the walk will not list it
            self._refuse("fanotify: cannot mark the filesystem of %s (zone %s): %s; the zone will be walked "
                         "every poll_interval (use watcher = \"inotify\" or \"poll\" for it)", path, zone,
                         e.strerror)
            return None

    def add_zone(self, zone: ZoneConfig) -> None:
        """Mark the zone's filesystem and remember where its root hangs (to see it removed)."""
        root = str(zone.path)
        self._roots[zone.name] = root
        if self._mark(zone.name, root) is None:
            return
        parent = os.path.dirname(os.path.abspath(root).rstrip("/")) or "/"
        try:
            self._root_at[(S.handle_key(parent), os.path.basename(root.rstrip("/")))] = zone.name
        except OSError:
            pass  # its removal is then found by the next walk

    def remove_zone(self, name: str) -> None:
        self._forget_zone(name)
        for at in [a for a, z in self._root_at.items() if z == name]:
            del self._root_at[at]
        for fsid, (path, zones) in list(self._marks.items()):
            zones.discard(name)
            if not zones:
                del self._marks[fsid]
                try:
                    S.mark_filesystem(self._fd, path, remove=True)
                except OSError:
                    pass  # unmounted, or the path is gone: the mark went with it or stays harmless

    def _place(self, zone: str, path: str) -> bytes | None:
        handle = S.handle_key(path)
        fsid = handle[:8]
        if (fsid not in self._marks or zone not in self._marks[fsid][1]) and self._mark(zone, path) is None:
            return None  # a filesystem mounted inside the zone that cannot be marked
        return handle

    # -- events -----------------------------------------------------------------------------------------
    def changes(self, limit: int = 10_000) -> list[Change]:
        out: list[Change] = []
        last: dict[tuple[str, str], Kind] = {}
        where_of = self._key.get
        items = self.inbox.drain(limit)
        self.events += len(items)
        for ev in items:
            if isinstance(ev, Change):
                out.append(ev)
                continue
            mask, handle, name = ev
            if mask & S.FAN_Q_OVERFLOW:
                out.append(Change(Kind.OVERFLOW, None, detail="fanotify event queue overflowed"))
                continue
            where = where_of(handle)
            if where is None:
                self.foreign += 1
                if mask & S.FAN_ONDIR and mask & _GONE and self._root_at:
                    self._root_gone(handle, name, out)
                continue
            if not name or name == ".":
                continue
            zone, reldir = where
            rel = f"{reldir}/{name}" if reldir else name
            if mask & S.FAN_ONDIR:
                self._dir_event(mask, zone, rel, out)
                continue
            kinds: tuple[Kind, ...]
            if mask & _GONE:
                kinds = (Kind.GONE, Kind.ARRIVED) if mask & _HERE else (Kind.GONE,)
            elif mask & S.FAN_MOVED_TO:
                kinds = (Kind.ARRIVED,)
            elif mask & _HERE:
                kinds = (Kind.WRITE,)
            else:
                continue
            for kind in kinds:
                if last.get((zone, rel)) is not kind:
                    last[(zone, rel)] = kind
                    out.append(Change(kind, zone, rel))
        return out

    def _dir_event(self, mask: int, zone: str, rel: str, out: list[Change]) -> None:
        if mask & _GONE:
            self._unwatch_tree(zone, rel)
            if mask & (S.FAN_CREATE | S.FAN_MOVED_TO) and os.path.isdir(os.path.join(self._roots[zone], rel)):
                out.append(Change(Kind.DIR, zone, rel))  # merged: gone and back (or back and gone)
        elif mask & (S.FAN_CREATE | S.FAN_MOVED_TO):
            out.append(Change(Kind.DIR, zone, rel))

    def _root_gone(self, parent: bytes, name: str, out: list[Change]) -> None:
        zone = self._root_at.get((parent, name))
        if zone is None or os.path.isdir(self._roots.get(zone, "")):
            return
        self._unwatch_tree(zone, "")
        out.append(Change(Kind.ZONE_LOST, zone, detail="the zone directory was removed or moved"))
