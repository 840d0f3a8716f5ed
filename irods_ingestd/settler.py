"""The settler: a file is ready when it has stopped growing.

A file is ready when its size and mtime have not changed for the zone's settle time and no write event
came since. One heap serves every file (no thread or timer per file): each settling file has one heap
entry; an event only moves the file's deadline, and a popped entry whose deadline moved is pushed again.
Memory grows with the files settling, never with the tree.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable
from dataclasses import dataclass

Key = tuple[str, str]  # (zone, relative path)
StatFn = Callable[[str, str], "tuple[int, int] | str | None"]


@dataclass(slots=True)
class Pending:
    size: int
    mtime_ns: int
    deadline: float
    settle: float
    closed: float = 0.0  # complete_when = "close": the writer closed it; ready this much after (0: not)


@dataclass(frozen=True, slots=True)
class Ready:
    zone: str
    rel: str
    size: int
    mtime_ns: int
    expect: str = ""  # a manifest's sum for it (completion gate)
    unit: str | None = None  # its completed directory (completion gate)


class Settler:
    def __init__(self, stat: StatFn, clock: Callable[[], float] = time.monotonic) -> None:
        self._stat = stat  # (zone, rel) → (size, mtime_ns) | reason to skip | None (gone)
        self._clock = clock
        self._pending: dict[Key, Pending] = {}
        self._heap: list[tuple[float, Key]] = []
        self._per_zone: dict[str, int] = {}  # files settling, by zone (the status asks every second)
        self.skipped: list[tuple[str, str, str]] = []  # (zone, rel, reason) found at expiry
        # complete_when = "close": is a file of such a zone still open for writing? (never ready then)
        self.open_for_writing: Callable[[str, str], bool] | None = None

    def __len__(self) -> int:
        return len(self._pending)

    def count(self, zone: str) -> int:
        return self._per_zone.get(zone, 0)

    def _drop(self, key: Key) -> None:
        if self._pending.pop(key, None) is not None:
            n = self._per_zone[key[0]] - 1
            if n:
                self._per_zone[key[0]] = n
            else:
                del self._per_zone[key[0]]

    def observe(self, zone: str, rel: str, size: int, mtime_ns: int, settle: float) -> None:
        """A file seen (by an event's stat or a walk) with this size and mtime: (re)start its timer
        if it is new or changed; an unchanged observation leaves the timer running."""
        key = (zone, rel)
        p = self._pending.get(key)
        now = self._clock()
        if p is None:
            self._pending[key] = Pending(size, mtime_ns, now + settle, settle)
            self._per_zone[zone] = self._per_zone.get(zone, 0) + 1
            heapq.heappush(self._heap, (now + settle, key))
        elif p.size != size or p.mtime_ns != mtime_ns:
            p.size, p.mtime_ns, p.deadline = size, mtime_ns, now + settle

    def touch(self, zone: str, rel: str) -> bool:
        """A write event for a settling file: restart its timer. False if the file is not settling."""
        p = self._pending.get((zone, rel))
        if p is None:
            return False
        p.deadline = self._clock() + (p.closed or p.settle)
        return True

    def closed(self, zone: str, rel: str, size: int, mtime_ns: int, settle: float, close_settle: float) -> None:
        """The writer closed the file (IN_CLOSE_WRITE, complete_when = "close"): ready after close_settle
        instead of settle, unless it is written to or found open for writing meanwhile."""
        self.observe(zone, rel, size, mtime_ns, settle)
        p = self._pending[(zone, rel)]
        p.size, p.mtime_ns, p.closed = size, mtime_ns, close_settle
        p.deadline = self._clock() + close_settle
        heapq.heappush(self._heap, (p.deadline, (zone, rel)))

    def is_settling(self, zone: str, rel: str) -> bool:
        return (zone, rel) in self._pending

    def discard(self, zone: str, rel: str | None = None) -> None:
        """Forget one file, or (rel None) every file of a zone."""
        if rel is not None:
            self._drop((zone, rel))
            return
        for key in [k for k in self._pending if k[0] == zone]:
            self._drop(key)

    def next_deadline(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def pop_ready(self, limit: int = 100_000) -> list[Ready]:
        """Files whose deadline passed and that are unchanged since they were last seen."""
        out: list[Ready] = []
        now = self._clock()
        heap = self._heap
        while heap and heap[0][0] <= now and len(out) < limit:
            deadline, key = heapq.heappop(heap)
            p = self._pending.get(key)
            if p is None:
                continue  # discarded
            if p.deadline > deadline:
                heapq.heappush(heap, (p.deadline, key))  # an event moved it
                continue
            zone, rel = key
            st = self._stat(zone, rel)
            if st is None:
                self._drop(key)  # vanished while settling
                continue
            if isinstance(st, str):
                self._drop(key)
                self.skipped.append((zone, rel, st))
                continue
            size, mtime = st
            if size != p.size or mtime != p.mtime_ns:
                p.size, p.mtime_ns, p.deadline, p.closed = size, mtime, now + p.settle, 0.0
                heapq.heappush(heap, (p.deadline, key))
                continue
            if self.open_for_writing is not None and self.open_for_writing(zone, rel):
                p.deadline, p.closed = now + p.settle, 0.0  # a "close" zone's file still open: not ready
                heapq.heappush(heap, (p.deadline, key))
                continue
            self._drop(key)
            out.append(Ready(zone, rel, size, mtime))
        return out
