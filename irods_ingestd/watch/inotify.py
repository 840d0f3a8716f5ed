"""The inotify backend (inotify_simple): one inotify instance for all zones, one watch per directory.

A dedicated thread blocks in `read()` and only hands the raw events to an `Inbox`, so the kernel's
queue is drained as fast as events come; the main loop translates them with `changes()`. The map from
watch descriptors to directories is touched only by the main loop.
"""

from __future__ import annotations

import errno
from typing import Any

from inotify_simple import INotify
from inotify_simple import flags as F

from ..config import ZoneConfig
from .api import Change, Inbox, Kind
from .common import DirWatcher

# No IN_MODIFY: it comes with every write() and the settler needs none of them (a file still growing
# changes size or mtime between the settler's two looks; CLOSE_WRITE and ATTRIB restart its timer).
DIR_MASK = (F.CLOSE_WRITE | F.ATTRIB | F.CREATE | F.MOVED_TO | F.MOVED_FROM | F.DELETE
            | F.DELETE_SELF | F.MOVE_SELF | F.ONLYDIR | F.EXCL_UNLINK)
_WRITE = F.CLOSE_WRITE | F.MODIFY | F.ATTRIB | F.CREATE
_ROOT_LOST = F.DELETE_SELF | F.MOVE_SELF | F.UNMOUNT | F.IGNORED


class InotifyWatcher(DirWatcher[int]):
    name = "inotify"
    limit_what = "the inotify watch limit (fs.inotify.max_user_watches) was reached"
    _read_errors = (OSError, ValueError)

    def __init__(self, inbox: Inbox) -> None:
        super().__init__(inbox)
        self._ino = INotify()
        self._thread.start()

    def _read(self) -> list[Any]:
        return list(self._ino.read(timeout=500, read_delay=2))

    def _close_source(self) -> None:
        self._ino.close()

    def add_zone(self, zone: ZoneConfig) -> None:
        self._roots[zone.name] = str(zone.path)

    def remove_zone(self, name: str) -> None:
        self._forget_zone(name)

    def _place(self, zone: str, path: str) -> int | None:
        try:
            return int(self._ino.add_watch(path, DIR_MASK))
        except OSError as e:
            if e.errno != errno.ENOSPC:
                raise
            if not self._refused:
                self._refuse("inotify watch limit reached (fs.inotify.max_user_watches) at %s: zone %s "
                             "will be walked instead of watched; raise the limit to watch it", path, zone)
            return None

    def _release(self, key: int) -> None:
        try:
            self._ino.rm_watch(key)
        except OSError:
            pass

    def changes(self, limit: int = 10_000) -> list[Change]:
        out: list[Change] = []
        last: dict[tuple[str, str], Kind] = {}  # coalesce repeats (a write is many MODIFY events)
        for ev in self.inbox.drain(limit):
            if isinstance(ev, Change):
                out.append(ev)
                continue
            wd, mask, _cookie, name = ev
            if mask & F.Q_OVERFLOW:
                out.append(Change(Kind.OVERFLOW, None, detail="kernel event queue overflowed"))
                continue
            where = self._key.get(wd)
            if where is None:
                continue
            zone, reldir = where
            if not name:  # an event about the watched directory itself
                if mask & F.IGNORED:
                    self._key.pop(wd, None)
                    if self._dirs.get(where) == wd:
                        del self._dirs[where]
                if reldir == "" and mask & _ROOT_LOST:
                    self._unwatch_tree(zone, "")
                    out.append(Change(Kind.ZONE_LOST, zone, detail="the zone directory was removed, moved "
                                      "or unmounted"))
                continue
            rel = f"{reldir}/{name}" if reldir else name
            if mask & F.ISDIR:
                if mask & (F.CREATE | F.MOVED_TO):
                    out.append(Change(Kind.DIR, zone, rel))
                elif mask & (F.DELETE | F.MOVED_FROM):
                    self._unwatch_tree(zone, rel)
                continue
            if mask & F.MOVED_TO:
                kind = Kind.ARRIVED
            elif mask & _WRITE:
                kind = Kind.WRITE
            elif mask & (F.DELETE | F.MOVED_FROM):
                kind = Kind.GONE
            else:
                continue
            if last.get((zone, rel)) is not kind:
                last[(zone, rel)] = kind
                out.append(Change(kind, zone, rel))
        return out
