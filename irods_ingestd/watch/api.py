"""The watcher interface, kept apart from its backends.

A backend turns what the kernel says into `Change` records for the daemon's main loop. Reading the
kernel's queue happens in the backend's own thread, which does nothing else, so it never falls behind;
translating and acting on changes happens in the main loop.
"""

from __future__ import annotations

import enum
import os
import select
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..config import ZoneConfig


class Kind(enum.Enum):
    WRITE = "write"  # a file was written, closed after writing, or had its times changed
    ARRIVED = "arrived"  # a file was renamed or moved into place
    DIR = "dir"  # a directory was created or moved in: watch it and list it
    GONE = "gone"  # a file was deleted or moved away
    OVERFLOW = "overflow"  # the kernel dropped events: every zone of this watcher must be walked
    ZONE_LOST = "zone_lost"  # the zone's root went away or can no longer be watched


@dataclass(frozen=True, slots=True)
class Change:
    kind: Kind
    zone: str | None
    rel: str = ""
    detail: str = ""


class Inbox:
    """A thread-safe hand-off from a reader thread to the main loop: append, then wake.

    The wake-up is a byte written to a pipe (a self-pipe), never a lock: signal handlers wake the main loop
    too (SIGHUP, SIGTERM), and a handler that interrupted the main thread inside a threading.Event's wait or
    clear, which hold the Event's lock, would block on that lock for ever (a storm of SIGHUPs hung the daemon)."""

    def __init__(self) -> None:
        self._items: deque[Any] = deque()
        self._r, self._w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def put_many(self, items: Iterable[Any]) -> None:
        self._items.extend(items)
        self.wake()

    def wake(self) -> None:
        """Safe in a signal handler and from any thread; never blocks (a full pipe is a wake-up pending)."""
        try:
            os.write(self._w, b"\0")
        except (BlockingIOError, OSError):
            pass

    def wait(self, timeout: float) -> None:
        """Until a wake-up or `timeout` (not at all with items waiting); uses up the wake-ups so far."""
        if not self._items:
            try:
                select.select([self._r], [], [], max(0.0, timeout))
            except (InterruptedError, ValueError, OSError):
                pass
        try:
            while os.read(self._r, 4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def close(self) -> None:
        for fd in (self._r, self._w):
            try:
                os.close(fd)
            except OSError:
                pass
        self._r = self._w = -1

    def drain(self, limit: int) -> list[Any]:
        out: list[Any] = []
        items = self._items
        while items and len(out) < limit:
            out.append(items.popleft())
        return out

    def __len__(self) -> int:
        return len(self._items)


class Watcher(ABC):
    """One backend watching any number of zones (one instance per backend, chosen by `select`).

    What the daemon may conclude from a backend is said here, never inferred from its class:
    - `name`: the backend's name (the zone option `watcher`);
    - `complete`: its events report every change, so a zone is trusted between walks and walked only
      every `rescan` (a backend that is not complete reports nothing: its zones are walked every
      `poll_interval`); a complete backend gets each directory's `watch_dir` before the walk lists it;
    - `needs_drain`: it collects events on its own (a reader thread) for `changes()` to translate in
      the main loop; a backend without it is never asked for changes;
    - `mtime_slack`: seconds of clock skew allowed for when a walk judges a file settled by its mtime
      (local file systems: a little; shared ones written from other hosts: more);
    - `limit_hit`: the kernel refused a watch for lack of resources: its zones cannot be trusted until a
      walk finds every directory watched again; `limit_what` says what was refused, for the log.
    """

    name: str = ""
    complete: bool = False
    needs_drain: bool = False
    mtime_slack: float = 60.0
    limit_what: str = "a watch was refused"

    @property
    def limit_hit(self) -> bool:
        return False

    @abstractmethod
    def add_zone(self, zone: ZoneConfig) -> None:
        """Start watching a zone's root (subdirectories are added with `watch_dir`)."""

    @abstractmethod
    def remove_zone(self, name: str) -> None: ...

    @abstractmethod
    def watch_dir(self, zone: str, reldir: str) -> bool:
        """Watch one directory of a zone; False if it cannot be watched (the zone must be walked)."""

    @abstractmethod
    def changes(self, limit: int = 10_000) -> list[Change]:
        """Translate what the reader collected since the last call (called from the main loop)."""

    @abstractmethod
    def close(self) -> None: ...
