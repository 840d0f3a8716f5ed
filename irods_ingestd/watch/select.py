"""Which backend watches a zone: one instance of each backend in use, shared by the zones that chose it
(watchdog's `observers/__init__.py` picks the platform's observer the same way).

A zone names its backend (`watcher = "inotify" | "fanotify" | "poll"`); `scan` (one walk, then exit)
watches nothing, so every zone is polled there. A backend that cannot start (inotify unavailable; fanotify
without CAP_SYS_ADMIN or on a kernel before 5.9) is logged and the zone polled instead. A new backend is
one module with a `Watcher` and one line in `BACKENDS`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ..config import ZoneConfig
from .api import Change, Inbox, Watcher
from .fanotify import FanotifyWatcher
from .inotify import InotifyWatcher
from .poll import PollWatcher

log = logging.getLogger("irods_ingestd.daemon")

BACKENDS: dict[str, Callable[[Inbox], Watcher]] = {
    "inotify": InotifyWatcher,
    "fanotify": FanotifyWatcher,
    "poll": lambda inbox: PollWatcher(),
}
FALLBACK = "poll"  # needs nothing from the kernel, so it always starts


class Backends:
    """The running backends, by name; `changes()` drains those with a reader of their own."""

    def __init__(self, inbox: Inbox, once: bool = False) -> None:
        self.inbox = inbox
        self.once = once
        self.running: dict[str, Watcher] = {}

    def for_zone(self, z: ZoneConfig) -> Watcher:
        name = FALLBACK if self.once else z.watcher
        try:
            return self._get(name)
        except OSError as e:
            log.error("%s is not available (%s): zone %s will be polled", name, e, z.name)
            return self._get(FALLBACK)

    def _get(self, name: str) -> Watcher:
        w = self.running.get(name)
        if w is None:
            w = self.running[name] = BACKENDS[name](self.inbox)
        return w

    def changes(self) -> list[Change]:
        out: list[Change] = []
        for w in list(self.running.values()):
            if w.needs_drain:
                out += w.changes()
        return out

    def close(self) -> None:
        for w in self.running.values():
            w.close()
        self.running.clear()
