"""Recently queued files looked at again: a change is reported once, bounded in count and time."""

from __future__ import annotations

import time

from irods_ingestd.recent import RecentlyQueued


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def now_ns() -> int:
    return int(time.time() * 1e9)


def test_a_change_is_reported_once_after_the_interval():
    now = now_ns()
    disk = {("z", "a"): (10, now)}
    clock = Clock()
    rq = RecentlyQueued(lambda z, r: disk.get((z, r)), window=60, clock=clock)
    rq.add("z", "a", 10, now, interval=2.0)
    assert rq.next_due() == 1002.0
    clock.t = 1001.0
    disk[("z", "a")] = (20, now + 1)
    assert rq.changed() == []  # not due yet
    clock.t = 1002.0
    assert rq.changed() == [("z", "a", 20, now + 1)]
    clock.t = 1010.0
    assert rq.changed() == [] and len(rq) == 0  # handed back: the settler has it now


def test_unchanged_files_are_looked_at_until_the_window_ends_and_gone_ones_let_go():
    now = now_ns()
    disk = {("z", "a"): (1, now), ("z", "b"): (1, now)}
    clock = Clock()
    looks: list[str] = []

    def stat(z: str, r: str):  # type: ignore[no-untyped-def]
        looks.append(r)
        return disk.get((z, r))

    rq = RecentlyQueued(stat, window=10, clock=clock)
    rq.add("z", "a", 1, now, interval=1.0)
    rq.add("z", "b", 1, now, interval=1.0)
    del disk[("z", "b")]  # deleted after ingest (an after = delete zone)
    for step in range(1, 15):
        clock.t = 1000.0 + step
        assert rq.changed() == []
    assert looks.count("b") == 1
    assert 8 <= looks.count("a") <= 10
    assert len(rq) == 0 and rq.next_due() is None


def test_bounded_and_old_files_not_kept():
    now = now_ns()
    clock = Clock()
    rq = RecentlyQueued(lambda z, r: (1, now), window=600, limit=100, clock=clock)
    rq.add("z", "old", 1, now - int(3600e9), interval=1.0)  # written an hour ago: a walk found it
    assert len(rq) == 0
    for i in range(500):
        rq.add("z", f"f{i}", 1, now, interval=1.0)
    assert len(rq) == 100
    rq.discard("z")
    assert len(rq) == 0 and rq.next_due() is None
