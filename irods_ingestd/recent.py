"""Files queued recently, looked at again for a while: a writer that paused longer than `settle` (so its
file was queued) and then wrote more, without closing the file, sends no event the daemon watches for
(no IN_MODIFY: it comes with every write()), and on a poll zone nothing at all. Here such a file is
stat()ed again every `interval` (the daemon uses half the zone's settle) for `window` seconds after it was
queued; a change hands it back to the settler, so the change is noticed within half the settle time and
the new version queued when it settled (within 1.5 × settle of the change), instead of at the next rescan.

Bounded: at most `limit` files (the oldest are let go first), only files written within `window`
(an old file queued by a walk is not expected to grow), and at most `budget` seconds of stat() calls a
turn (when more are due, the intervals stretch). A file gone (deleted or moved after ingest) is let go.
"""

from __future__ import annotations

import heapq
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

StatFn = Callable[[str, str], "tuple[int, int] | str | None"]
Key = tuple[str, str]


@dataclass(slots=True)
class _Item:
    size: int
    mtime_ns: int
    interval: float
    until: float
    due: float


class RecentlyQueued:
    def __init__(self, stat: StatFn, window: float = 600.0, limit: int = 20_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._stat = stat
        self.window = window
        self.limit = limit
        self._clock = clock
        self._items: OrderedDict[Key, _Item] = OrderedDict()
        self._heap: list[tuple[float, Key]] = []

    def __len__(self) -> int:
        return len(self._items)

    def add(self, zone: str, rel: str, size: int, mtime_ns: int, interval: float) -> None:
        """A file was queued at this version; look at it again every `interval` seconds for a while."""
        if mtime_ns < (time.time() - self.window) * 1e9:
            return
        now = self._clock()
        key = (zone, rel)
        item = _Item(size, mtime_ns, interval, now + self.window, now + interval)
        self._items[key] = item
        self._items.move_to_end(key)
        heapq.heappush(self._heap, (item.due, key))
        while len(self._items) > self.limit:
            self._items.popitem(last=False)
        if len(self._heap) > 2 * self.limit + 100:
            self._heap = [(it.due, k) for k, it in self._items.items()]
            heapq.heapify(self._heap)

    def discard(self, zone: str, rel: str | None = None) -> None:
        """Let one file go, or (rel None) every file of a zone."""
        if rel is not None:
            self._items.pop((zone, rel), None)
            return
        for key in [k for k in self._items if k[0] == zone]:
            del self._items[key]

    def next_due(self) -> float | None:
        while self._heap:
            due, key = self._heap[0]
            item = self._items.get(key)
            if item is not None and item.due == due:
                return due
            heapq.heappop(self._heap)  # let go, or moved
        return None

    def changed(self, budget: float = 0.02) -> list[tuple[str, str, int, int]]:
        """(zone, rel, size, mtime_ns) of the files due for a look that changed since they were queued."""
        out: list[tuple[str, str, int, int]] = []
        now = self._clock()
        deadline = now + budget
        heap = self._heap
        while heap and heap[0][0] <= now and self._clock() < deadline:
            due, key = heapq.heappop(heap)
            item = self._items.get(key)
            if item is None or item.due != due:
                continue
            st = self._stat(*key)
            if not isinstance(st, tuple):  # gone, or no longer a regular file: nothing to queue here
                del self._items[key]
                continue
            if st != (item.size, item.mtime_ns):
                del self._items[key]
                out.append((key[0], key[1], st[0], st[1]))
            elif now + item.interval < item.until:
                item.due = now + item.interval
                heapq.heappush(heap, (item.due, key))
            else:
                del self._items[key]
        return out
