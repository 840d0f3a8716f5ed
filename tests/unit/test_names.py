"""names: relative path → iRODS path, refusals, and the reversible mapping of awkward names."""

from __future__ import annotations

import random

import pytest

from irods_ingestd import names
from irods_ingestd.names import BadName, map_component, target_for, unmap_component

COLL = "/tempZone/home/rods/landing"


def test_plain_paths_are_kept() -> None:
    t = target_for(COLL, "a/b/c.dat")
    assert t.path == f"{COLL}/a/b/c.dat"
    assert t.collection == f"{COLL}/a/b"
    assert t.name == "c.dat"
    assert not t.mapped
    tag = t.part_name[len(".c.dat.ingestd-"):-len(".part")]
    assert len(tag) == 8 and int(tag, 16) >= 0
    assert t.part_path == f"{COLL}/a/b/.c.dat.ingestd-{tag}.part"
    assert t.old_path == f"{COLL}/a/b/.c.dat.ingestd-{tag}-old.part"
    assert target_for(COLL, "a/b2/c.dat").part_name != t.part_name  # the tag depends on the whole path
    assert target_for(COLL, "x").path == f"{COLL}/x"


@pytest.mark.parametrize("name", ["ünïcødé ✓.txt", "100%.txt", "%41", "it's & <b>.dat", "a b\\c", "...",
                                  ".hidden"])
def test_valid_utf8_names_are_unchanged(name: str) -> None:
    assert target_for(COLL, f"d/{name}").path == f"{COLL}/d/{name}"
    assert not target_for(COLL, name).mapped


@pytest.mark.parametrize("rel", ["", "/abs", "/", "a//b", "a/", "../x", "a/../b", "a/..", ".", "./a", "a/./b",
                                 "a\0b"])
def test_escaping_paths_are_refused(rel: str) -> None:
    with pytest.raises(BadName):
        target_for(COLL, rel)


def test_lone_surrogate_not_from_bytes_is_refused() -> None:
    with pytest.raises(BadName):
        target_for(COLL, "a\ud800b")


def test_too_long_is_refused() -> None:
    with pytest.raises(BadName, match="too long"):
        target_for(COLL, "x" * 1100)


def test_undecodable_bytes_are_escaped_and_percent_only_in_such_names() -> None:
    rel = b"dir/caf\xe9 100%.txt".decode("utf-8", "surrogateescape")
    t = target_for(COLL, rel)
    assert t.mapped
    assert t.path == f"{COLL}/dir/caf%E9 100%25.txt"
    assert unmap_component(t.name) == b"caf\xe9 100%.txt"
    assert names.rel_from_original_name(names.original_name_value(rel)) == rel
    assert names.original_name_value(rel) == b"dir/caf\xe9 100%.txt".hex()


def test_control_characters_are_escaped() -> None:
    t = target_for(COLL, "a\nb\x7f\tc")
    assert t.name == "a%0Ab%7F%09c"
    assert unmap_component(t.name) == b"a\nb\x7f\tc"


def test_directories_are_mapped_per_component() -> None:
    rel = b"ok/bad\xff/f".decode("utf-8", "surrogateescape")
    t = target_for(COLL, rel)
    assert t.collection == f"{COLL}/ok/bad%FF"
    assert t.name == "f"
    assert t.mapped
    assert names.display(rel) == "ok/bad%FF/f"


def _random_name(rng: random.Random) -> bytes:
    alphabet = [b"a", b"Z", b"%", b"%2", b"%25", b"%FF", b" ", b"\n", b"\x7f", b"\xff", b"\xe9", b"\xc3\xa9",
                b"\xe2\x9c\x93", b"\xed\xa0\x80", b"\x80", b"'", b".", b"\x01"]
    while True:
        raw = b"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12)))
        if raw not in (b".", b"..") and b"/" not in raw and b"\0" not in raw:
            return raw


def test_mapping_round_trips_and_is_deterministic() -> None:
    rng = random.Random(4242)
    seen: dict[str, bytes] = {}
    for _ in range(5000):
        raw = _random_name(rng)
        s = raw.decode("utf-8", "surrogateescape")
        m = map_component(s)
        assert m == map_component(s)
        m.encode("utf-8")  # always valid UTF-8
        assert not any(ord(c) < 0x20 or ord(c) == 0x7F for c in m)
        if names.needs_mapping(s):
            assert unmap_component(m) == raw
            # injective among mapped names
            assert seen.setdefault(m, raw) == raw
        else:
            assert m == s
            assert raw.decode("utf-8") == s


def test_full_path_round_trip() -> None:
    rng = random.Random(7)
    for _ in range(500):
        parts = [_random_name(rng) for _ in range(rng.randint(1, 4))]
        rel = b"/".join(parts).decode("utf-8", "surrogateescape")
        t = target_for(COLL, rel)
        assert t.path.startswith(COLL + "/")
        got = t.path[len(COLL) + 1:].split("/")
        assert len(got) == len(parts)
        for g, p in zip(got, parts, strict=True):
            ps = p.decode("utf-8", "surrogateescape")
            assert (unmap_component(g) if names.needs_mapping(ps) else g.encode()) == p


def test_temporary_names_fit_a_255_byte_component():
    from irods_ingestd.names import MAX_COMPONENT_BYTES, old_name, part_name

    long = "x" * 255
    for f in (part_name, old_name):
        assert len(f(long, "/c/" + long).encode()) <= MAX_COMPONENT_BYTES
        assert f(long, "/c/" + long) == f(long, "/c/" + long)  # deterministic
        assert f(long, "/c/" + long) != f("y" * 255, "/c/" + "y" * 255)  # distinct
        assert f("short.txt", "/c/short.txt").startswith(".short.txt.ingestd-")
    assert part_name(long, "/c/" + long) != old_name(long, "/c/" + long)


def test_reserved_names_are_never_ingested_whatever_the_patterns() -> None:
    from pathlib import Path

    from irods_ingestd.config import ZoneConfig
    from irods_ingestd.filters import NameFilter

    t = target_for(COLL, "x.dat")
    f = NameFilter.for_zone(ZoneConfig(name="z", path=Path("/l"), collection=COLL, temp_patterns=()))
    for reserved in (t.part_name, t.old_name, ".x.dat.ingestd-del.a1b2c3", ".ingestd-move.a1b2c3",
                     names.part_name("y" * 255, "/c/" + "y" * 255)):
        assert f.reason_to_skip(reserved, reserved) is not None, reserved
    for ordinary in (".x.ingestd.part", ".y.ingestd-old.part", "x.dat", "x.dat.~1~"):  # users' names
        assert f.reason_to_skip(ordinary, ordinary) is None, ordinary


def test_a_name_too_long_once_mapped_is_refused_before_any_copy() -> None:
    with pytest.raises(BadName, match="once mapped"):
        target_for(COLL, "d/" + "\udcff" * 100)  # 100 bytes that are not UTF-8 → 300 bytes of %FF
