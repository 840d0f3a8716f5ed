"""Declarative metadata in register zones, where most files are registered in bulk (50 a call, their AVUs
after it): a file's sidecar AVUs reach its object, a bad sidecar keeps its file out of the bulk call and fails
it the one-call way before anything is registered, a directory's sidecar is on its collection once."""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace

import pytest
from irods.models import Collection, CollectionMeta, DataObject

from irods_ingestd.ingest import bulk, usermeta
from irods_ingestd.zoneparts.avus import Avus
from tests.integration.test_ingest import Env, avus, env, objects_under  # noqa: F401 - the fixture


def test_register_in_bulk_with_sidecars(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    calls: list[int] = []
    real_send = bulk._send
    monkeypatch.setattr(bulk, "_send", lambda s, rows, *a: (calls.append(len(rows)), real_send(s, rows, *a)))
    syncs: list[int] = []
    real_sync = usermeta.sync_collection
    monkeypatch.setattr(usermeta, "sync_collection", lambda *a: syncs.append(real_sync(*a)) or syncs[-1])
    cfg = Avus(path_regex=r"^(?P<run>[^/]+)/(?P<sample>[^/.]+)\.dat$", sidecar="{name}.json",
               dir_sidecar="meta.json")
    ctx = env.ctx(mode="register", resource="demoResc", avus=cfg)
    assert env.run(ctx, [env.write("first.dat", b"the first file teaches the worker the server's scheme")]) \
        ["ingested"] == 1
    (env.root / "run9").mkdir()
    (env.root / "run9/meta.json").write_text(json.dumps({"project": "P7", "tags": ["a", "b"]}))
    items = []
    for i in range(12):
        items.append(env.write(f"run9/s{i:02}.dat", os.urandom(64 + i)))
        (env.root / f"run9/s{i:02}.dat.json").write_text(
            '{"broken": ' if i == 5 else json.dumps({"index": i, "depth": {"value": 2 * i + 1, "units": "x"}}))
    os.utime(env.root / "run9/s05.dat.json", (time.time() - 60, time.time() - 60))  # not being written
    s = env.run(ctx, items)
    assert (s["ingested"], s["failed"]) == (11, 1), s
    assert calls == [11], calls  # the bad one was kept out of the bulk call
    failed = dict(ctx.ledger.failures("z1"))
    assert list(failed) == ["run9/s05.dat"]
    reason = failed["run9/s05.dat"]["reason"]
    assert reason.startswith(f"sidecar {env.root}/run9/s05.dat.json: not valid JSON"), reason
    with env.session() as sess:
        objs = objects_under(sess, env.coll)
        assert f"{env.coll}/run9/s05.dat" not in objs and len(objs) == 12  # first.dat and 11 of run9
        assert not any(".json" in p for p in objs)
        a = avus(sess, f"{env.coll}/run9/s07.dat")
        assert (a["ingestd::run"], a["ingestd::sample"], a["index"], a["depth"]) == ("run9", "s07", "7", "15")
        assert [(m.value, m.units) for m in sess.metadata.get(DataObject, f"{env.coll}/run9/s07.dat")
                if m.name == "depth"] == [("15", "x")]
        q = sess.query(CollectionMeta.name, CollectionMeta.value).filter(Collection.name == f"{env.coll}/run9")
        assert sorted((r[CollectionMeta.name], r[CollectionMeta.value]) for r in q) == \
            [("project", "P7"), ("tags", "a"), ("tags", "b")]
    assert [n for n in syncs if n] == [3], syncs  # one write for the collection, whatever the file count
    # the same again, by another worker: already present, nothing written
    again = env.run(env.ctx(mode="register", resource="demoResc", avus=cfg),
                    [it for it in items if it.rel != "run9/s05.dat"])
    assert again["already_present"] == 11, again


def test_register_one_by_one_fails_a_bad_sidecar_before_registering(env: Env) -> None:  # noqa: F811
    ctx = env.ctx(mode="register", avus=replace(Avus(), sidecar="{name}.meta"))
    good = env.write("g.dat", b"good")
    (env.root / "g.dat.meta").write_text('{"k": {"value": "v", "units": "u"}}')
    bad = env.write("b.dat", b"bad")
    (env.root / "b.dat.meta").write_text('{"k": ""}')
    os.utime(env.root / "b.dat.meta", (time.time() - 60, time.time() - 60))
    s = env.run(ctx, [good, bad])
    assert (s["ingested"], s["failed"]) == (1, 1), s
    with env.session() as sess:
        assert set(objects_under(sess, env.coll)) == {f"{env.coll}/g.dat"}
        assert avus(sess, f"{env.coll}/g.dat")["k"] == "v"
