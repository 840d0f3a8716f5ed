from __future__ import annotations

from irods_ingestd.settler import Settler


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def make(files: dict):  # type: ignore[no-untyped-def]
    clock = Clock()
    return Settler(lambda z, rel: files.get(rel), clock), clock


def test_ready_only_after_settle_time_unchanged():
    files = {"a": (10, 1)}
    s, clock = make(files)
    s.observe("z", "a", 10, 1, settle=5)
    clock.t += 4.9
    assert s.pop_ready() == []
    clock.t += 0.2
    [r] = s.pop_ready()
    assert (r.rel, r.size) == ("a", 10)
    assert len(s) == 0


def test_growth_restarts_the_timer():
    files = {"a": (10, 1)}
    s, clock = make(files)
    s.observe("z", "a", 10, 1, settle=5)
    clock.t += 5.1
    files["a"] = (20, 2)  # grew meanwhile
    assert s.pop_ready() == []
    clock.t += 4.0
    assert s.pop_ready() == []
    clock.t += 1.2
    assert [r.size for r in s.pop_ready()] == [20]


def test_event_moves_the_deadline():
    files = {"a": (10, 1)}
    s, clock = make(files)
    s.observe("z", "a", 10, 1, settle=5)
    clock.t += 4
    assert s.touch("z", "a")
    clock.t += 4
    assert s.pop_ready() == []
    clock.t += 1.1
    assert len(s.pop_ready()) == 1
    assert not s.touch("z", "a")


def test_vanished_and_special_files_are_dropped():
    files = {"a": (1, 1), "b": (1, 1)}
    s, clock = make(files)
    s.observe("z", "a", 1, 1, settle=1)
    s.observe("z", "b", 1, 1, settle=1)
    del files["a"]
    files["b"] = "fifo (never opened)"
    clock.t += 2
    assert s.pop_ready() == []
    assert len(s) == 0
    assert s.skipped == [("z", "b", "fifo (never opened)")]


def test_one_heap_entry_per_file_whatever_the_events():
    files = {"a": (1, 1)}
    s, clock = make(files)
    s.observe("z", "a", 1, 1, settle=1)
    for _ in range(1000):
        s.touch("z", "a")
        s.observe("z", "a", 1, 1, settle=1)
    assert len(s._heap) == 1


def test_count_by_zone_follows_adds_and_every_kind_of_removal():
    files = {"a": (1, 1), "b": (1, 1), "c": (1, 1)}
    s, clock = make(files)
    for rel in ("a", "b", "c"):
        s.observe("z1", rel, 1, 1, settle=1)
    s.observe("z2", "a", 1, 1, settle=1)
    s.observe("z1", "a", 1, 1, settle=1)  # seen again: not counted twice
    assert (s.count("z1"), s.count("z2"), s.count("none")) == (3, 1, 0)
    s.discard("z1", "c")
    assert s.count("z1") == 2
    del files["b"]
    clock.t += 2
    assert sorted((r.zone, r.rel) for r in s.pop_ready()) == [("z1", "a"), ("z2", "a")]  # b vanished
    assert (s.count("z1"), s.count("z2"), len(s)) == (0, 0, 0)
    s.observe("z3", "a", 1, 1, settle=1)
    s.discard("z3")
    assert s.count("z3") == 0 and len(s) == 0
