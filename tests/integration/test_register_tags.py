"""Register mode: an object goes in with its metadata or not at all (issue 14.2), on the real iRODS.

The AVUs of a registered file are set in a second call after the registration. A worker that dies between
the two (here: the AVU call fails as on a dropped connection) leaves an object without them; the file's
next attempt finds the object pointing at the landing file and adds what is missing, the zone's own AVUs
(path regex) too, whatever the provenance. An AVU call the server refuses unregisters the object again,
so nothing half-tagged stays (the landing file is untouched: unregistering never deletes it).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import irods.exception as iex
import pytest
from irods.models import Collection, DataObject, DataObjectMeta

from irods_ingestd.ingest import catalog
from tests.integration.test_ingest import Env, env  # noqa: F401

REGEX = r"(?P<run>run\d+)/(?P<sample>[^/]+)\.dat$"


def _avus(sess: Any, coll: str, name: str) -> dict[str, str]:
    q = sess.query(DataObjectMeta.name, DataObjectMeta.value).filter(Collection.name == coll) \
        .filter(DataObject.name == name)
    return {r[DataObjectMeta.name]: r[DataObjectMeta.value] for r in q}


def _avus_all(env: Env, i: int) -> list[tuple[str, str]]:  # noqa: F811
    with env.session() as sess:
        q = sess.query(DataObjectMeta.name, DataObjectMeta.value).filter(Collection.name == f"{env.coll}/run7") \
            .filter(DataObject.name == f"s{i}.dat")
        return sorted((r[DataObjectMeta.name], r[DataObjectMeta.value]) for r in q)


def _registered(sess: Any, coll: str) -> set[str]:
    q = sess.query(Collection.name, DataObject.name).filter(Collection.name == coll)
    return {r[DataObject.name] for r in q}


def _ctx(env: Env, provenance: str) -> Any:  # noqa: F811
    z = env.config.zones[0]
    return env.ctx(mode="register", provenance=provenance, resource="demoResc",  # a resource: bulk rows name it
                   avus=replace(z.avus, path_regex=REGEX, avu_prefix="seq::"))


@pytest.mark.parametrize("provenance", ["object", "collection"])
@pytest.mark.parametrize("bulk", [False, True])
def test_a_worker_dying_before_the_avus_leaves_them_added_by_the_next_attempt(env: Env, monkeypatch,  # noqa: F811
                                                                               provenance: str, bulk: bool) -> None:
    ctx = _ctx(env, provenance)
    if bulk:  # a worker registers in bulk once it knows the server's checksum scheme (from a first file)
        env.run(ctx, [env.write("run6/first.dat", b"first")])
        assert ctx.hash_scheme is not None
    items = [env.write(f"run7/s{i}.dat", f"sample {i}".encode()) for i in range(3 if bulk else 1)]
    real = catalog.set_metadata
    calls = {"n": 0}

    def dies(session: Any, path: str, avus: list[Any]) -> None:
        if path.startswith(f"{env.coll}/run7/s") and calls["n"] == 0:
            calls["n"] += 1
            raise ConnectionResetError("the worker's connection dropped")
        real(session, path, avus)

    sent = {"rows": 0}
    bulk_register = catalog.bulk_register

    def counted(session: Any, values: Any, n: int) -> None:
        sent["rows"] += n
        bulk_register(session, values, n)

    monkeypatch.setattr(catalog, "set_metadata", dies)
    monkeypatch.setattr(catalog, "bulk_register", counted)
    env.run(ctx, items)
    monkeypatch.setattr(catalog, "set_metadata", real)
    assert calls["n"] == 1
    assert (sent["rows"] == len(items)) if bulk else sent["rows"] == 0, sent
    env.run(ctx, items)  # the job run again (or a later walk)
    with env.session() as sess:
        assert _registered(sess, f"{env.coll}/run7") == {f"s{i}.dat" for i in range(len(items))}
        for i in range(len(items)):
            avus = _avus(sess, f"{env.coll}/run7", f"s{i}.dat")
            assert avus.get("seq::run") == "run7" and avus.get("seq::sample") == f"s{i}", (i, avus)
    assert all((env.root / it.rel).exists() for it in items)
    before = {i: _avus_all(env, i) for i in range(len(items))}
    tagged: list[str] = []
    monkeypatch.setattr(catalog, "set_metadata", lambda session, path, avus: tagged.append(path))
    again = env.run(ctx, items)  # offered once more (a walk after a Redis loss): already there, untouched
    monkeypatch.setattr(catalog, "set_metadata", real)
    assert tagged == [], tagged  # its AVUs are all there: no AVU call
    assert again["already_present"] == len(items) and again["failed"] == 0, again
    with env.session() as sess:
        assert _registered(sess, f"{env.coll}/run7") == {f"s{i}.dat" for i in range(len(items))}
    assert {i: _avus_all(env, i) for i in range(len(items))} == before


def test_avus_the_server_refuses_leave_no_object_registered(env: Env, monkeypatch) -> None:  # noqa: F811
    ctx = _ctx(env, "object")
    item = env.write("run8/x.dat", b"refused")

    def refuses(session: Any, path: str, avus: list[Any]) -> None:
        raise iex.CAT_NO_ACCESS_PERMISSION("no")

    monkeypatch.setattr(catalog, "set_metadata", refuses)
    s = env.run(ctx, [item])
    assert s["failed"] == 1, s
    with env.session() as sess:
        assert not sess.collections.exists(f"{env.coll}/run8") or _registered(sess, f"{env.coll}/run8") == set()
    assert (env.root / item.rel).read_bytes() == b"refused"  # unregistering never deletes the landing file
