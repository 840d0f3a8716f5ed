"""Same-name files in the fault campaign's `delete` zone: a file is ingested and deleted, then a different
file arrives under the same name (and maybe a third).

Each planned name gets 2-3 versions of different content, written one after the other by one thread:

- `after-delete`: the next version is written once the previous one's landing file is gone (the zone's
  after-action deleted it, which it does only after the copy was verified);
- `swap`: the next version is renamed onto the name (as rsync does) as soon as the previous one is
  verified in iRODS, while the worker's deferred delete still waits out `after_hold`: the delete must see
  another file and leave it alone, and the new file must be ingested too.

Some versions have the previous one's size, and some of those its mtime as well (`rsync -t` of a corrected
file), so neither size nor mtime tells them apart. irods-ingestd (versions = "keep") must end with the
newest version at the name and version k of n at `<name>.~k~`; the oracle (`chaos_check.verify`) checks
that with the versions recorded here in the order written.

A version that does not leave the landing zone (or is not verified) within `wait_limit` seconds ends its
name's sequence: that is noted, and the drain and the checks then say why.
"""

from __future__ import annotations

import hashlib
import os
import random
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from tests.chaos.check import Expected, ZoneLayout

ZONE = "delete"
POLL = 0.3


@dataclass
class NamePlan:
    rel: str
    start: float  # seconds after the campaign's writer started
    how: str  # after-delete | swap
    sizes: list[int]
    same_mtime: list[bool]  # version k (k >= 1) gets version k-1's mtime


@dataclass
class SameNameStats:
    names: int = 0
    versions_written: int = 0
    swapped: int = 0  # versions renamed onto a verified file before its delete
    same_size: int = 0
    same_mtime: int = 0
    gave_up: list[str] = field(default_factory=list)


def plan_same_names(rng: random.Random, n: int, window: float) -> list[NamePlan]:
    """n names whose first versions are written in the first 60% of the writer's window."""
    out = []
    for k in range(n):
        nver = rng.choice([2, 2, 3])
        sizes = [rng.randint(1, 64 * 1024)]
        same_mtime = [False]
        for _ in range(1, nver):
            x = rng.random()
            if x < 0.35:  # the same size (different bytes)
                sizes.append(sizes[-1])
                same_mtime.append(rng.random() < 0.5)
            else:
                sizes.append(rng.randint(1, 64 * 1024))
                same_mtime.append(False)
        rel = f"again/sample-{k:03d}.dat" if k % 2 else f"again-{k:03d}.dat"
        out.append(NamePlan(rel, round(rng.uniform(0.0, 0.6) * window, 2), rng.choice(["after-delete", "swap"]),
                            sizes, same_mtime))
    return sorted(out, key=lambda p: p.start)


@dataclass
class _State:
    plan: NamePlan
    written: int = 0  # versions written so far
    mtime_ns: int = 0  # of the last version written
    ino: int = 0
    since: float = 0.0  # when the last version was written
    done: bool = False


class SameNameWriter:
    """Writes the planned versions; `register(zone, rel, expected)` records each version as it is written."""

    def __init__(self, zone: ZoneLayout, seed: int, plans: list[NamePlan],
                 register: Callable[[str, str, Expected], None],
                 session: Callable[[], AbstractContextManager[Any]], wait_limit: float) -> None:
        assert zone.after == "delete"
        self.zone, self.seed, self.plans = zone, seed, plans
        self.register, self.session, self.wait_limit = register, session, wait_limit
        self.stats = SameNameStats(names=len(plans))
        self.notes: list[str] = []
        self.stop = threading.Event()

    def content(self, rel: str, k: int, size: int) -> bytes:
        return random.Random(f"{self.seed}:same-name:{rel}:v{k}").randbytes(size)

    def run(self, t0: float) -> None:
        states = [_State(p) for p in self.plans]
        while not self.stop.is_set():
            now = time.monotonic()
            pending = [s for s in states if not s.done]
            if not pending:
                return
            want_sums: dict[str, str] = {}
            for s in pending:
                if s.written == 0:
                    if now - t0 >= s.plan.start:
                        self._write(s, swap=False)
                elif s.plan.how == "swap":
                    want_sums[s.plan.rel] = self._checksum(s, s.written - 1)
                elif not os.path.lexists(self.zone.landing / s.plan.rel):
                    self._write(s, swap=False)
            if want_sums:
                verified = self._verified(want_sums)
                for s in pending:
                    if s.plan.rel in verified:
                        # verified: rename the next one onto it, unless its delete already came
                        self._write(s, swap=os.path.lexists(self.zone.landing / s.plan.rel))
            for s in pending:
                if not s.done and s.written and time.monotonic() - s.since > self.wait_limit:
                    s.done = True
                    what = "verified" if s.plan.how == "swap" else "deleted by the after-action"
                    self.stats.gave_up.append(s.plan.rel)
                    self.notes.append(f"same-name {self.zone.name}:{s.plan.rel}: version {s.written} was not "
                                      f"{what} within {self.wait_limit:.0f}s; versions after it not written")
            self.stop.wait(POLL)

    def _checksum(self, s: _State, k: int) -> str:
        e = self._expected(s.plan.rel, k, s.plan.sizes[k])
        return e.checksum

    def _expected(self, rel: str, k: int, size: int) -> Expected:
        return Expected(self.zone.name, rel, size, hashlib.sha256(self.content(rel, k, size)).digest())

    def _verified(self, want: dict[str, str]) -> set[str]:
        """The names whose object in iRODS holds the wanted checksum now."""
        from irods.models import Collection, DataObject

        out: set[str] = set()
        try:
            with self.session() as sess:
                for rel, checksum in want.items():
                    path = f"{self.zone.collection}/{rel}"
                    coll, _, name = path.rpartition("/")
                    q = sess.query(DataObject.checksum).filter(Collection.name == coll) \
                        .filter(DataObject.name == name)
                    if any(row[DataObject.checksum] == checksum for row in q):
                        out.add(rel)
        except Exception:  # noqa: BLE001 - iRODS refusing or slow (a fault): look again next time
            return out
        return out

    def _write(self, s: _State, swap: bool) -> None:
        k = s.written
        p = s.plan
        size = p.sizes[k]
        data = self.content(p.rel, k, size)
        path = self.zone.landing / p.rel
        path.parent.mkdir(parents=True, exist_ok=True)
        self.register(self.zone.name, p.rel, self._expected(p.rel, k, size))
        tmp = path.parent / f".{path.name}.{hashlib.blake2b(f'{p.rel}{k}'.encode(), digest_size=3).hexdigest()}"
        # a temporary name of the zone's temp_patterns (.*.??????), then a rename: one event, one file
        with open(tmp, "wb") as f:
            f.write(data)
        if k and p.same_mtime[k]:
            os.utime(tmp, ns=(s.mtime_ns, s.mtime_ns))
            self.stats.same_mtime += 1
        if k and size == p.sizes[k - 1]:
            self.stats.same_size += 1
        st = os.stat(tmp)
        os.rename(tmp, path)
        s.mtime_ns, s.ino = st.st_mtime_ns, st.st_ino
        s.written += 1
        s.since = time.monotonic()
        self.stats.versions_written += 1
        self.stats.swapped += bool(k and swap)
        if s.written == len(p.sizes):
            s.done = True
