"""The inotify backend (inotify_simple): one inotify instance for all zones, one watch per directory.

A dedicated thread blocks in `read()` and only hands the raw events to an `Inbox`, so the kernel's
queue is drained as fast as events come; the main loop translates them with `changes()`. The map from
watch descriptors to directories is touched only by the main loop.
"""

from __future__ import annotations

import errno
import logging
import os
import threading

from inotify_simple import INotify
from inotify_simple import flags as F

from ..config import ZoneConfig
from .api import Change, Inbox, Kind, Watcher

log = logging.getLogger(__name__)

# No IN_MODIFY: it comes with every write() and the settler needs none of them (a file still growing
# changes size or mtime between the settler's two looks; CLOSE_WRITE and ATTRIB restart its timer).
DIR_MASK = (F.CLOSE_WRITE | F.ATTRIB | F.CREATE | F.MOVED_TO | F.MOVED_FROM | F.DELETE
            | F.DELETE_SELF | F.MOVE_SELF | F.ONLYDIR | F.EXCL_UNLINK)
_WRITE = F.CLOSE_WRITE | F.MODIFY | F.ATTRIB | F.CREATE
_ROOT_LOST = F.DELETE_SELF | F.MOVE_SELF | F.UNMOUNT | F.IGNORED


class InotifyWatcher(Watcher):
    name = "inotify"
    complete = True  # every change on a watched local directory is reported
    needs_drain = True
    mtime_slack = 2.0

    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox
        self._ino = INotify()
        self._roots: dict[str, str] = {}  # zone → root path
        self._wd: dict[int, tuple[str, str]] = {}  # wd → (zone, reldir)
        self._dirs: dict[tuple[str, str], int] = {}  # (zone, reldir) → wd
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read_loop, name="inotify-reader", daemon=True)
        self._thread.start()
        self._limit_hit = False

    def _read_loop(self) -> None:
        ino = self._ino
        while not self._stop.is_set():
            try:
                events = ino.read(timeout=500, read_delay=2)
            except (OSError, ValueError):
                if self._stop.is_set():
                    return
                log.exception("reading inotify events failed; the zones will be walked")
                self.inbox.put_many([Change(Kind.OVERFLOW, None, detail="inotify read failed")])
                self._stop.wait(1.0)
                continue
            if events:
                self.inbox.put_many(events)

    def add_zone(self, zone: ZoneConfig) -> None:
        self._roots[zone.name] = str(zone.path)

    def remove_zone(self, name: str) -> None:
        for key in [k for k in self._dirs if k[0] == name]:
            self._unwatch(key)
        self._roots.pop(name, None)

    @property
    def limit_hit(self) -> bool:
        return self._limit_hit

    def watched(self, zone: str) -> int:
        return sum(1 for k in self._dirs if k[0] == zone)

    def is_watched(self, zone: str, reldir: str) -> bool:
        return (zone, reldir) in self._dirs

    def watch_dir(self, zone: str, reldir: str) -> bool:
        key = (zone, reldir)
        if key in self._dirs:
            return True
        root = self._roots[zone]
        path = os.path.join(root, reldir) if reldir else root
        try:
            wd = self._ino.add_watch(path, DIR_MASK)
        except OSError as e:
            if e.errno == errno.ENOSPC:
                if not self._limit_hit:
                    log.error("inotify watch limit reached (fs.inotify.max_user_watches) at %s: zone %s "
                              "will be walked instead of watched; raise the limit to watch it", path, zone)
                self._limit_hit = True
            elif e.errno not in (errno.ENOENT, errno.ENOTDIR):
                log.warning("cannot watch %s: %s", path, e.strerror)
            return False
        old = self._wd.get(wd)
        if old is not None and old != key:  # the same directory under another name (moved)
            self._dirs.pop(old, None)
        self._wd[wd] = key
        self._dirs[key] = wd
        return True

    def _unwatch(self, key: tuple[str, str]) -> None:
        wd = self._dirs.pop(key, None)
        if wd is None:
            return
        self._wd.pop(wd, None)
        try:
            self._ino.rm_watch(wd)
        except OSError:
            pass

    def _unwatch_tree(self, zone: str, reldir: str) -> None:
        prefix = reldir + "/"
        for key in [k for k in self._dirs if k[0] == zone and (k[1] == reldir or k[1].startswith(prefix))]:
            self._unwatch(key)

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
            where = self._wd.get(wd)
            if where is None:
                continue
            zone, reldir = where
            if not name:  # an event about the watched directory itself
                if mask & F.IGNORED:
                    self._wd.pop(wd, None)
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

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        try:
            self._ino.close()
        except OSError:
            pass
