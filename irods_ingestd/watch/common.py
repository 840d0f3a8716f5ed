"""What the per-directory kernel backends (inotify, fanotify) do the same way.

Both run a reader thread that only hands raw events to the `Inbox` (a failed read is reported as an
overflow, so the zones are walked), keep each zone's root, and map the kernel's key of a directory (a
watch descriptor, a file handle) to (zone, reldir) and back, following a directory moved under another
name. Both report a refused watch the same way: `limit_hit` turns true and `limit_what` says what was
refused (the zone logs it when it stops trusting events). What differs (reading, placing and releasing a
watch, translating events) stays in the backend.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
from abc import abstractmethod
from collections.abc import Hashable
from typing import Any, Generic, TypeVar

from .api import Change, Inbox, Kind, Watcher

K = TypeVar("K", bound=Hashable)
Where = tuple[str, str]  # (zone, reldir)


class DirWatcher(Watcher, Generic[K]):
    complete = True  # every change on a watched local directory is reported
    needs_drain = True
    mtime_slack = 2.0
    _read_errors: tuple[type[Exception], ...] = (OSError,)

    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox
        self._log = logging.getLogger(type(self).__module__)  # the backend's own logger, as before
        self._roots: dict[str, str] = {}  # zone → root path
        self._key: dict[K, Where] = {}  # the kernel's key of a directory → (zone, reldir)
        self._dirs: dict[Where, K] = {}  # (zone, reldir) → key
        self._refused = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read_loop, name=f"{self.name}-reader", daemon=True)

    # -- the reader thread ------------------------------------------------------------------------------
    @abstractmethod
    def _read(self) -> list[Any]:
        """Block a little (about half a second) for the kernel's events; [] if none came."""

    @abstractmethod
    def _close_source(self) -> None: ...

    def _read_loop(self) -> None:
        while not self._stop.is_set():
            try:
                events = self._read()
            except self._read_errors:
                if self._stop.is_set():
                    return
                self._log.exception("reading %s events failed; the zones will be walked", self.name)
                self.inbox.put_many([Change(Kind.OVERFLOW, None, detail=f"{self.name} read failed")])
                self._stop.wait(1.0)
                continue
            if events:
                self.inbox.put_many(events)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        try:
            self._close_source()
        except OSError:
            pass

    # -- refused watches --------------------------------------------------------------------------------
    @property
    def limit_hit(self) -> bool:
        return self._refused

    def _refuse(self, message: str, *args: object) -> None:
        """The kernel refused what a zone needs: log why (naming path and zone) and walk its zones."""
        self._log.error(message, *args)
        self._refused = True

    # -- zones and directories --------------------------------------------------------------------------
    def _path(self, zone: str, reldir: str) -> str:
        root = self._roots[zone]
        return os.path.join(root, reldir) if reldir else root

    def watched(self, zone: str) -> int:
        return sum(1 for k in self._dirs if k[0] == zone)

    def is_watched(self, zone: str, reldir: str) -> bool:
        return (zone, reldir) in self._dirs

    @abstractmethod
    def _place(self, zone: str, path: str) -> K | None:
        """Watch the directory at `path`: the kernel's key of it, or None if refused (after `_refuse`).
        An OSError says the directory cannot be watched (gone before the walk came: said only otherwise)."""

    def watch_dir(self, zone: str, reldir: str) -> bool:
        where = (zone, reldir)
        if where in self._dirs:
            return True
        path = self._path(zone, reldir)
        try:
            key = self._place(zone, path)
        except OSError as e:
            if e.errno not in (errno.ENOENT, errno.ENOTDIR):  # gone before the walk came
                self._log.warning("cannot watch %s: %s", path, e.strerror)
            return False
        if key is None:
            return False
        self._remember(where, key)
        return True

    def _remember(self, where: Where, key: K) -> None:
        old = self._key.get(key)
        if old is not None and old != where:  # the same directory under another name (moved)
            self._dirs.pop(old, None)
        self._key[key] = where
        self._dirs[where] = key

    def _release(self, key: K) -> None:
        """Give the kernel's watch of a forgotten directory back (nothing to give by default)."""

    def _unwatch(self, where: Where) -> None:
        key = self._dirs.pop(where, None)
        if key is None:
            return
        if self._key.get(key) == where:
            del self._key[key]
        self._release(key)

    def _unwatch_tree(self, zone: str, reldir: str) -> None:
        prefix = reldir + "/"
        for where in [w for w in self._dirs if w[0] == zone and (w[1] == reldir or w[1].startswith(prefix))]:
            self._unwatch(where)

    def _forget_zone(self, name: str) -> None:
        for where in [w for w in self._dirs if w[0] == name]:
            self._unwatch(where)
        self._roots.pop(name, None)
