"""Recount the ledger's `queued` counters from the entries, while daemons and workers go on.

One SCAN over the zones' directory hashes (`{p}:l:*`), counted a batch at a time by the ledger's
recount scripts, which stay exact under concurrent changes (see `ledger_lua.py`). The daemon runs one
at start, a step per turn of its loop; `irods-ingestd status --recount` runs one to the end.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from . import keys
from .ledger import Ledger

log = logging.getLogger(__name__)


class Recount:
    def __init__(self, ledger: Ledger, zones: Iterable[str], scan_count: int = 1000) -> None:
        self.ledger = ledger
        self.zones = sorted(set(zones))
        self.scan_count = scan_count
        self.cursor = 0
        self.begun = False
        self.done = False
        self.result: dict[str, tuple[int, int]] = {}  # zone → (before, after)
        self._off: set[str] = set()  # zones whose recount another recount finished
        self._prefix = keys.dir_key_prefix(ledger.prefix)

    def step(self) -> bool:
        """One SCAN call and the counting of what it returned; True when the recount is finished."""
        if self.done:
            return True
        if not self.begun:
            for z in self.zones:
                self.ledger.recount_begin(z)
            self.begun = True
        self.cursor, keys = self.ledger.r.scan(self.cursor, match=self.ledger.dir_pattern(), count=self.scan_count)
        by_zone: dict[str, list[bytes]] = {}
        plen = len(self._prefix)
        for k in keys:
            zone = k[plen:].decode(errors="replace").rpartition(":")[0]
            if zone in self.zones and zone not in self._off:
                by_zone.setdefault(zone, []).append(k)
        for zone, zkeys in by_zone.items():
            if not self.ledger.recount_step(zone, zkeys):
                self._off.add(zone)
        if self.cursor == 0:
            self._finish()
        return self.done

    def _finish(self) -> None:
        for zone in self.zones:
            if zone in self._off:
                continue
            res = self.ledger.recount_end(zone)
            if res is not None:
                self.result[zone] = res
        self.done = True

    def run(self, budget: float | None = None) -> bool:
        """Steps until finished (or for `budget` seconds); True when finished."""
        deadline = None if budget is None else time.monotonic() + budget
        while not self.step():
            if deadline is not None and time.monotonic() >= deadline:
                return False
        return True
