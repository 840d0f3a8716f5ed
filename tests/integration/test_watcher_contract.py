"""The watcher contract: every backend (`watch/select.BACKENDS`) run through the same cases.

What a backend promises, through the `Watcher` interface and a `Zone` that uses it: every file written
into the zone (created, written then closed, renamed in, in a directory tree moved in) becomes ready once
with its final size and never while it is written; a deleted file never does; events lost (an overflow)
lead to a walk that finds what they missed. A complete backend keeps these promises with its events
between walks (the zone is walked every `rescan`, an hour here); one that is not is walked every
`poll_interval`. The rig is the daemon's part in miniature: drain the changes, step the walks, settle.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import redis

from irods_ingestd.config import WATCHERS
from irods_ingestd.ledger import Ledger
from irods_ingestd.reconcile import Reconciler
from irods_ingestd.settler import Settler
from irods_ingestd.watch.api import Change, Inbox, Kind
from irods_ingestd.watch.select import BACKENDS, Backends
from irods_ingestd.zone import Zone
from tests.daemon_harness import make_config

SETTLE = 0.5
POLL = 0.3


class Rig:
    """One zone on one backend, driven like the daemon drives it; a `ZoneSink` that records."""

    def __init__(self, tmp: Path, r: redis.Redis, backend: str) -> None:
        self.root = tmp / "landing"
        self.root.mkdir()
        self.outside = tmp / "outside"  # same file system: renames from here are moves into the zone
        self.outside.mkdir()
        cfg = make_config(tmp, "redis://unused", [{
            "name": "z", "path": str(self.root), "collection": "/tempZone/home/rods/z", "watcher": backend,
            "settle": f"{SETTLE}s", "poll_interval": f"{POLL}s", "rescan": "1h"}])
        self.inbox = Inbox()
        self.backends = Backends(self.inbox)
        self.zone = Zone(cfg=cfg.zones[0], watcher=self.backends.for_zone(cfg.zones[0]))
        self.settler = Settler(lambda zone, rel: self.zone.stat(rel))
        self.reconciler = Reconciler(Ledger(r, "contract"))
        self.ready: dict[str, list[int]] = {}  # rel → sizes it was ready at
        self.discarded: list[str] = []
        self.zone.begin(self)
        self.run_for(0.2)  # the first walk places the watches

    # -- ZoneSink ---------------------------------------------------------------------------------------
    def observe(self, zone: str, rel: str, size: int, mtime_ns: int, settle: float) -> None:
        self.settler.observe(zone, rel, size, mtime_ns, settle)

    def touch(self, zone: str, rel: str) -> bool:
        return self.settler.touch(zone, rel)

    def is_settling(self, zone: str, rel: str) -> bool:
        return self.settler.is_settling(zone, rel)

    def discard(self, zone: str, rel: str | None = None) -> None:
        self.discarded.append(rel or "")
        self.settler.discard(zone, rel)

    def ready_file(self, zone: str, rel: str, size: int, mtime_ns: int) -> None:
        self.ready.setdefault(rel, []).append(size)

    def report_skip(self, zone: str, rel: str, reason: str) -> None:
        pass

    # -- the daemon's part ----------------------------------------------------------------------------------
    def turn(self) -> None:
        self.inbox.wait(0.02)
        for ch in self.backends.changes():
            if ch.kind is Kind.OVERFLOW:
                self.zone.untrust("events were lost (queue overflow)")
            else:
                self.zone.on_change(ch, self)
        if self.zone.due(time.monotonic()):
            self.zone.start_walk([self.zone.cfg])
        if self.zone.walk is not None:
            self.zone.walk_step(self.reconciler, self, 0.05)
        for x in self.settler.pop_ready():
            self.ready_file(x.zone, x.rel, x.size, x.mtime_ns)

    def run_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.turn()

    def wait_ready(self, *rels: str, timeout: float = 10.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end and not all(r in self.ready for r in rels):
            self.turn()
        assert all(r in self.ready for r in rels), f"not ready: {[r for r in rels if r not in self.ready]}"

    def lose_events(self) -> None:
        """What the backend collected is dropped; a backend with events of its own reports an overflow."""
        self.inbox.drain(10**9)
        if self.zone.watcher.needs_drain:
            self.inbox.put_many([Change(Kind.OVERFLOW, None, detail="test")])

    def close(self) -> None:
        self.backends.close()


def unavailable(backend: str, path: Path) -> str | None:
    """Why this machine cannot run a backend (the kernel or the capabilities), or None."""
    if backend == "fanotify":
        from irods_ingestd.watch.fanotify_sys import unavailable as fanotify_unavailable
        return fanotify_unavailable(str(path))
    return None


@pytest.fixture(params=sorted(BACKENDS))
def rig(request, tmp_path, redis_conn):  # type: ignore[no-untyped-def]
    why = unavailable(request.param, tmp_path)
    if why:
        pytest.skip(f"{request.param}: {why}")
    rig = Rig(tmp_path, redis_conn, request.param)
    yield rig
    rig.close()


def test_every_watcher_a_zone_may_name_is_a_backend_here() -> None:
    assert set(BACKENDS) == set(WATCHERS)


def test_backend_declares_what_the_daemon_needs(rig: Rig) -> None:
    w = rig.zone.watcher
    assert w.name == rig.zone.cfg.watcher
    assert not w.limit_hit
    assert rig.zone.state == ("watching" if w.complete else "polling")
    assert rig.zone.walk_interval() == (rig.zone.cfg.rescan if w.complete else POLL)
    assert rig.zone.walks_done == 1  # the first walk is done and placed the watches
    if not w.needs_drain:
        assert w.changes() == []


def test_file_created(rig: Rig) -> None:
    (rig.root / "new.dat").write_bytes(b"x" * 10)
    rig.wait_ready("new.dat")
    assert set(rig.ready["new.dat"]) == {10}


def test_file_written_then_closed_is_ready_only_after(rig: Rig) -> None:
    with open(rig.root / "slow.dat", "wb") as f:
        for _ in range(8):
            f.write(b"y" * 100)
            f.flush()
            rig.run_for(0.15)  # well within the settle time between writes
            assert "slow.dat" not in rig.ready, "ready while still being written"
    rig.wait_ready("slow.dat")
    assert set(rig.ready["slow.dat"]) == {800}


def test_file_renamed_into_the_zone(rig: Rig) -> None:
    (rig.outside / "part").write_bytes(b"r" * 5)
    os.rename(rig.outside / "part", rig.root / "renamed.dat")
    rig.wait_ready("renamed.dat")
    assert set(rig.ready["renamed.dat"]) == {5}


def test_directory_tree_moved_in(rig: Rig) -> None:
    tree = rig.outside / "tree"
    (tree / "a" / "b").mkdir(parents=True)
    (tree / "top").write_bytes(b"1")
    (tree / "a" / "mid").write_bytes(b"22")
    (tree / "a" / "b" / "deep").write_bytes(b"333")
    os.rename(tree, rig.root / "tree")
    rig.wait_ready("tree/top", "tree/a/mid", "tree/a/b/deep")
    (rig.root / "tree" / "a" / "b" / "later").write_bytes(b"4444")  # the moved-in directories are watched
    rig.wait_ready("tree/a/b/later")
    assert {rel: set(s) for rel, s in rig.ready.items()} == {
        "tree/top": {1}, "tree/a/mid": {2}, "tree/a/b/deep": {3}, "tree/a/b/later": {4}}


def test_deleted_file_is_never_ready(rig: Rig) -> None:
    (rig.root / "brief.dat").write_bytes(b"d")
    end = time.monotonic() + 5
    while not rig.settler.is_settling("z", "brief.dat") and time.monotonic() < end:
        rig.turn()  # until it is seen (by an event or a walk) and settling
    assert rig.settler.is_settling("z", "brief.dat") and "brief.dat" not in rig.ready
    os.unlink(rig.root / "brief.dat")
    rig.run_for(3 * SETTLE)
    assert "brief.dat" not in rig.ready
    assert not rig.settler.is_settling("z", "brief.dat")


def test_lost_events_lead_to_a_walk_that_finds_what_they_missed(rig: Rig) -> None:
    for i in range(5):
        (rig.root / f"missed{i}").write_bytes(b"m")
    os.mkdir(rig.root / "missed-dir")
    (rig.root / "missed-dir" / "inside").write_bytes(b"mm")
    time.sleep(0.2)  # the backend's reader has them; the rig has not looked
    rig.lose_events()
    walks = rig.zone.walks_done
    rig.wait_ready(*(f"missed{i}" for i in range(5)), "missed-dir/inside")
    rig.run_for(0.2)
    assert rig.zone.walks_done > walks
    assert rig.zone.state == ("watching" if rig.zone.watcher.complete else "polling")  # trusted again
    (rig.root / "missed-dir" / "after").write_bytes(b"a")
    rig.wait_ready("missed-dir/after")
