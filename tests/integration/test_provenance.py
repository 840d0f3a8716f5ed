"""``provenance = "collection"`` on the real iRODS: no metadata call a file (the objects carry no provenance
AVUs but a mapped name's original), the zone's provenance once on its collection, and the zone's collection
taken as the zone's when a landing file changes (kept as name.~N~ with versions = "keep"); an object with
another file's provenance is still a conflict."""

from __future__ import annotations

import os
from typing import Any

import pytest
from irods.meta import iRODSMeta
from irods.models import Collection, DataObject

from irods_ingestd.config import ConfigError, validate
from irods_ingestd.ingest import catalog, zone_provenance
from tests.expect import sha2
from tests.integration.test_ingest import Env, avus, env, objects_under  # noqa: F401 - the fixture


def collection_avus(sess: Any, coll: str) -> list[tuple[str, str]]:
    return sorted((m.name, m.value) for m in sess.metadata.get(Collection, coll))


def counting_metadata_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = catalog.set_metadata

    def spy(session: Any, path: str, avus: list[iRODSMeta]) -> None:
        if avus:
            calls.append(path)
        real(session, path, avus)

    monkeypatch.setattr(catalog, "set_metadata", spy)
    return calls


def test_put_with_collection_provenance_writes_no_avus_a_file(env: Env,  # noqa: F811
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    calls = counting_metadata_calls(monkeypatch)
    ctx = env.ctx(provenance="collection")
    items = [env.write(f"run/l{i % 2}/f{i}.dat", os.urandom(100 + i)) for i in range(12)]
    assert env.run(ctx, items)["ingested"] == 12
    assert calls == []
    with env.session() as sess:
        objs = objects_under(sess, env.coll)
        for it in items:
            data = (env.root / it.rel).read_bytes()
            assert objs[f"{env.coll}/{it.rel}"][:2] == (len(data), sha2(data))
            assert avus(sess, f"{env.coll}/{it.rel}") == {}
        have = collection_avus(sess, env.coll)
    assert have == sorted((m.name, m.value) for m in zone_provenance.wanted(env.zone(ctx), ctx.host))
    assert ("ingestd::zone", "z1") in have and ("ingestd::source_root", str(env.root)) in have
    # another worker host: its name is added beside the first, nothing is repeated
    other = env.ctx(provenance="collection")
    other.host = "another-host"
    assert env.run(other, [env.write("more.dat", b"more")])["ingested"] == 1
    with env.session() as sess:
        have2 = collection_avus(sess, env.coll)
    assert set(have2) - set(have) == {("ingestd::source_host", "another-host")}
    assert len(have2) == len(set(have2))
    assert env.run(env.ctx(provenance="collection"), items)["already_present"] == 12


def test_a_changed_file_keeps_the_earlier_object_and_another_files_object_is_a_conflict(env: Env) -> None:  # noqa: F811
    ctx = env.ctx(provenance="collection")
    first = env.write("sheet.csv", b"version 1")
    assert env.run(ctx, [first])["ingested"] == 1
    second = env.write("sheet.csv", b"version 2, longer")
    os.utime(env.root / "sheet.csv", ns=(first.mtime_ns + 10**9, first.mtime_ns + 10**9))
    second = env.item("sheet.csv")
    assert env.run(env.ctx(provenance="collection"), [second])["updated"] == 1
    with env.session() as sess:
        objs = objects_under(sess, env.coll)
        assert objs[f"{env.coll}/sheet.csv"][1] == sha2(b"version 2, longer")
        assert objs[f"{env.coll}/sheet.csv.~1~"][1] == sha2(b"version 1")
        # an object made from another landing file (object provenance) is never taken for this one's
        sess.data_objects.create(f"{env.coll}/foreign.dat").metadata.add("ingestd::source_path", "/elsewhere/x")
        sess.metadata.set(DataObject, f"{env.coll}/foreign.dat",
                          iRODSMeta("ingestd::zone", "other"))
    res = env.run(env.ctx(provenance="collection"), [env.write("foreign.dat", b"mine")])
    assert res["failed"] == 1, res
    with env.session() as sess:
        assert objects_under(sess, env.coll)[f"{env.coll}/foreign.dat"][0] == 0  # untouched


def test_a_mapped_name_keeps_its_original_name_avu(env: Env) -> None:  # noqa: F811
    raw = b"n/caf\xe9.txt"
    p = os.path.join(os.fsencode(env.root), raw)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "wb") as f:
        f.write(b"bytes")
    it = env.item(raw.decode("utf-8", "surrogateescape"))
    assert env.run(env.ctx(provenance="collection"), [it])["ingested"] == 1
    with env.session() as sess:
        a = avus(sess, f"{env.coll}/n/caf%E9.txt")
    assert list(a) == ["ingestd::original_name"] and bytes.fromhex(a["ingestd::original_name"]) == raw


def test_register_in_bulk_with_collection_provenance(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    calls = counting_metadata_calls(monkeypatch)
    ctx = env.ctx(mode="register", resource="demoResc", provenance="collection")
    items = [env.write(f"r/f{i:03}.dat", os.urandom(64 + i)) for i in range(60)]
    s = env.run(ctx, items)
    assert s["ingested"] == 60 and s["failed"] == 0, s
    assert calls == []
    with env.session() as sess:
        objs = objects_under(sess, env.coll)
        for it in items[::7]:
            data = (env.root / it.rel).read_bytes()
            assert objs[f"{env.coll}/{it.rel}"] == (len(data), sha2(data), os.path.realpath(env.root / it.rel))
            assert avus(sess, f"{env.coll}/{it.rel}") == {}
        assert ("ingestd::provenance", "collection") in collection_avus(sess, env.coll)
    assert env.run(env.ctx(mode="register", resource="demoResc", provenance="collection"),
                   items)["already_present"] == 60


def test_check_config_names_a_bad_provenance() -> None:
    with pytest.raises(ConfigError) as e:
        validate({"irods": {"environment_file": "/x"},
                  "zone": [{"name": "z", "path": "/l", "collection": "/t/z", "provenance": "file"}]},
                 check_paths=False)
    assert "zone 'z'.provenance: 'file' is not one of object, collection" in str(e.value)


def test_replace_is_refused_with_collection_provenance_in_put_zones() -> None:
    zone = {"name": "z", "path": "/l", "collection": "/t/z", "provenance": "collection", "versions": "replace"}
    with pytest.raises(ConfigError) as e:
        validate({"irods": {"environment_file": "/x"}, "zone": [zone]}, check_paths=False)
    assert "zone 'z'.versions: \"replace\" needs provenance = \"object\"" in str(e.value)
    validate({"irods": {"environment_file": "/x"}, "zone": [{**zone, "mode": "register"}]}, check_paths=False)


def test_a_register_zone_never_takes_an_object_that_points_elsewhere(env: Env) -> None:  # noqa: F811
    with env.session() as sess:
        sess.collections.create(env.coll)
        sess.data_objects.create(f"{env.coll}/theirs.dat")  # someone's put object, in the vault
    res = env.run(env.ctx(mode="register", provenance="collection"), [env.write("theirs.dat", b"landing")])
    assert res["failed"] == 1, res
    with env.session() as sess:
        size, _, phys = objects_under(sess, env.coll)[f"{env.coll}/theirs.dat"]
    assert size == 0 and not phys.startswith(str(env.root))
    # its own registration of an earlier version is re-registered
    ctx = env.ctx(mode="register", provenance="collection")
    first = env.write("mine.dat", b"one")
    assert env.run(ctx, [first])["ingested"] == 1
    (env.root / "mine.dat").write_bytes(b"two, longer")
    assert env.run(env.ctx(mode="register", provenance="collection"), [env.item("mine.dat")])["updated"] == 1
    with env.session() as sess:
        assert objects_under(sess, env.coll)[f"{env.coll}/mine.dat"][1] == sha2(b"two, longer")
