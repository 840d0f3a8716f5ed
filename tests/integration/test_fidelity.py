"""Differential tests: the same python-irodsclient calls against the real iRODS and the test server.

Each test runs one scenario on both servers and compares what the client sees: values returned, the
exception class and iRODS error code raised, and what GenQuery shows afterwards (see
``tests/irods_server/differential.py`` for what is normalised). The real server is the judge: a difference
is a defect of the test server. Needs a real server (``.ci/irods.sh`` or ``INGESTD_TEST_IRODS_ENV``).
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

import pytest
from irods.column import Between, In, Like, NotLike
from irods.exception import NetworkException
from irods.message import MetadataRequest, RErrorStack
from irods.meta import AVUOperation, iRODSMeta
from irods.models import Collection, DataObject, DataObjectMeta

from irods_ingestd.ingest.catalog import rename  # DATA_OBJ_RENAME exactly as the product sends it
from tests.irods_server.differential import (
    Differential,
    Recorder,
    open_statements,
    outcome,
    race_round,
    row_values,
    wait_until_usable,
)


@pytest.fixture(scope="module")
def diff(request: pytest.FixtureRequest) -> Differential:
    real = request.getfixturevalue("irods_real")
    if real is None:
        pytest.skip("no real iRODS server configured (.ci/irods.sh or INGESTD_TEST_IRODS_ENV): "
                    "the differential tests compare the test server with one")  # fmt: skip
    return Differential({"real": real, "standin": request.getfixturevalue("irods_standin")})


def test_collections(diff: Differential) -> None:
    def scenario(rec: Recorder) -> None:
        s, b = rec.sess, rec.base
        rec.call("create nested", s.collections.create, f"{b}/a/b/c")
        rec.call("create existing, recursive", s.collections.create, f"{b}/a/b")
        rec.call("create existing", s.collections.create, f"{b}/a/b", recurse=False)
        rec.call("create without parent", s.collections.create, f"{b}/x/y", recurse=False)
        s.data_objects.create(f"{b}/obj")
        rec.call("create on an object", s.collections.create, f"{b}/obj")
        rec.call("create under an object", s.collections.create, f"{b}/obj/sub")
        rec.call("exists", s.collections.exists, f"{b}/a/b/c")
        rec.call("exists, missing", s.collections.exists, f"{b}/nope")
        rec.call("exists, an object", s.collections.exists, f"{b}/obj")
        rec.call("get an object", s.collections.get, f"{b}/obj")
        rec.call("remove non-empty", s.collections.remove, f"{b}/a", recurse=False)
        for recurse in (False, True):
            for force in (False, True):
                rec.call(f"remove missing {recurse=} {force=}", s.collections.remove, f"{b}/zz", recurse, force)
        rec.call("remove into the trash", s.collections.remove, f"{b}/a/b")
        rec.call("remove for good", s.collections.remove, f"{b}/a", force=True)
        s.collections.create(f"{b}/m/n")
        rec.call("move into a collection", s.collections.move, f"{b}/m", f"{b}/a2")
        rec.state()

    diff.assert_same(scenario)


@pytest.mark.parametrize("raw_api", [True, False], ids=["COLL_CREATE", "collections.create"])
def test_concurrent_recursive_collection_creation(diff: Differential, raw_api: bool) -> None:
    """A real server's recursive create answers success even when a racing session made one of the
    levels first and its own collection was never created (python-irodsclient's look-up afterwards then
    raises CollectionDoesNotExist); the test server must produce the same outcome classes."""
    found: dict[str, set[tuple[Any, ...]]] = {}
    for name, server in diff.servers.items():
        for attempt in range(2):  # once more if another test run restarts the real server meanwhile
            wait_until_usable(server)
            sessions = [server.session() for _ in range(6)]
            try:
                for s in sessions:
                    s.collections.exists(server.home)  # log in before the race
                found[name] = set().union(*(race_round(server, sessions, raw_api) for _ in range(8)))
                break
            except NetworkException:
                if attempt or not server.real:
                    raise
            finally:
                for s in sessions:
                    s.cleanup()
    assert found["standin"] == found["real"]
    assert ("exists afterwards", False) in found["real"]  # the race happened
    assert ("after a second create, all exist", True) in found["real"]


def test_put_and_create_onto_existing(diff: Differential, tmp_path: Any) -> None:
    (tmp_path / "one").write_bytes(b"one")
    (tmp_path / "two").write_bytes(b"second version")

    def scenario(rec: Recorder) -> None:
        s, b = rec.sess, rec.base
        rec.call("put", s.data_objects.put, str(tmp_path / "one"), f"{b}/x", regChksum="")
        rec.call("put onto it", s.data_objects.put, str(tmp_path / "two"), f"{b}/x")
        rec.call("get", s.data_objects.get, f"{b}/x")
        rec.call("put with forceFlag", s.data_objects.put, str(tmp_path / "one"), f"{b}/x", forceFlag="")
        rec.call("create onto it", s.data_objects.create, f"{b}/x")
        rec.call("create, force=False", s.data_objects.create, f"{b}/x", force=False)
        rec.call("open w onto it", rec.write_object, f"{b}/x", b"written")
        rec.call("put into a collection", s.data_objects.put, str(tmp_path / "one"), b)
        rec.call("put, missing collection", s.data_objects.put, str(tmp_path / "one"), f"{b}/no/x")
        rec.call("create on a collection", s.data_objects.create, b)
        rec.call("open r, missing", s.data_objects.open, f"{b}/missing", "r")
        rec.call("open w, no create", s.data_objects.open, f"{b}/missing", "w", create=False)
        rec.call("exists", s.data_objects.exists, f"{b}/x")
        rec.call("exists, a collection", s.data_objects.exists, b)
        rec.state()

    diff.assert_same(scenario)


def test_large_put_and_an_abandoned_writer(diff: Differential, tmp_path: Any) -> None:
    (tmp_path / "big").write_bytes(os.urandom(33 * 1024 * 1024))  # over PRC's 32 MiB single-stream limit

    def scenario(rec: Recorder) -> None:
        s, b = rec.sess, rec.base
        rec.call("parallel put", s.data_objects.put, str(tmp_path / "big"), f"{b}/big", num_threads=0)
        rec.call("parallel put, regChksum", s.data_objects.put, str(tmp_path / "big"), f"{b}/big2", num_threads=3,
                 regChksum="")  # fmt: skip
        rec.call("chksum", s.data_objects.chksum, f"{b}/big")
        writer = rec.server.session()
        f = writer.data_objects.open(f"{b}/w", "w")
        f.write(b"x" * 100_000)
        f.flush()
        rec.state("while a writer has it open")
        for conn in [*writer.pool.active, *writer.pool.idle]:  # it goes away without a close
            conn.socket.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + 15
        while s.data_objects.get(f"{b}/w").replicas[0].status == "2" and time.monotonic() < deadline:
            time.sleep(0.2)
        rec.state("after the writer went away")

    diff.assert_same(scenario)


def test_authentication(diff: Differential) -> None:
    found: dict[str, list[tuple[Any, ...]]] = {}
    for name, server in diff.servers.items():
        wait_until_usable(server)
        found[name] = []
        for kw in ({}, {"password": "wrong"}, {"user": "nobody"}, {"user": "public", "password": ""}):
            with server.session(**kw) as s:
                found[name].append(outcome(s.collections.exists, server.home))
    assert found["real"][0] == ("ok", True)
    assert found["standin"] == found["real"]


def test_rename_raw_api(diff: Differential) -> None:
    def scenario(rec: Recorder) -> None:
        s, b = rec.sess, rec.base
        for name in ("a", "b"):
            s.data_objects.create(f"{b}/{name}")
        s.collections.create(f"{b}/sub")
        rec.call("onto an object", rename, s, f"{b}/a", f"{b}/b")
        rec.call("onto a collection", rename, s, f"{b}/a", f"{b}/sub")
        rec.call("of a missing object", rename, s, f"{b}/zz", f"{b}/zz2")
        rec.call("of a missing object onto one", rename, s, f"{b}/zz", f"{b}/b")
        rec.call("of a collection", rename, s, f"{b}/sub", f"{b}/sub2")
        rec.call("into a missing collection", rename, s, f"{b}/a", f"{b}/no/a")
        rec.call("onto itself", rename, s, f"{b}/a", f"{b}/a")
        rec.call("rename", rename, s, f"{b}/a", f"{b}/sub/a.final")
        rec.state()

    diff.assert_same(scenario)


def test_unlink_and_unregister(diff: Differential) -> None:
    def scenario(rec: Recorder) -> None:
        s, b = rec.sess, rec.base
        rec.call("unlink missing", s.data_objects.unlink, f"{b}/missing")
        rec.call("unlink missing, force", s.data_objects.unlink, f"{b}/missing", force=True)
        rec.call("unlink a collection", s.data_objects.unlink, b, force=True)
        for i in range(2):  # the second one finds the name taken in the trash
            s.data_objects.create(f"{b}/t")
            rec.call(f"unlink into the trash {i}", s.data_objects.unlink, f"{b}/t")
        s.data_objects.create(f"{b}/f")
        rec.call("unlink, force", s.data_objects.unlink, f"{b}/f", force=True)
        phys = rec.write("reg", b"registered")
        s.data_objects.register(phys, f"{b}/reg")
        s.data_objects.register(phys, f"{b}/reg2")
        rec.call("unregister", s.data_objects.unregister, f"{b}/reg")
        rec.call("unregister missing", s.data_objects.unregister, f"{b}/reg")
        rec.call("unlink a registered file, force", s.data_objects.unlink, f"{b}/reg2", force=True)
        rec.note("the registered file is still there", os.path.exists(phys))
        rec.state()

    diff.assert_same(scenario)


def test_checksums(diff: Differential, tmp_path: Any) -> None:
    (tmp_path / "f").write_bytes(b"checksum me")
    local = str(tmp_path / "f")

    def scenario(rec: Recorder) -> None:
        s, b = rec.sess, rec.base
        for name, kw in [("plain", {}), ("reg", {"regChksum": ""}), ("verify", {"verifyChksum": ""}),
                         ("force", {"forceChksum": ""}), ("reg+wrong", {"regChksum": "", "chksum": "sha2:AAAA"}),
                         ("verify+wrong", {"verifyChksum": "", "chksum": "sha2:AAAA"})]:  # fmt: skip
            rec.call(f"put {name}", s.data_objects.put, local, f"{b}/{name}", **kw)
        rec.call("open w, regChksum", rec.write_object, f"{b}/w", b"written", regChksum="")
        rec.state("after the puts")
        rec.call("verify, no checksum", s.data_objects.chksum, f"{b}/plain", verifyChksum="", r_error=RErrorStack())
        rec.call("chksum", s.data_objects.chksum, f"{b}/plain")
        rec.call("chksum again", s.data_objects.chksum, f"{b}/plain")
        rec.call("verify", s.data_objects.chksum, f"{b}/plain", verifyChksum="")
        rec.call("force", s.data_objects.chksum, f"{b}/plain", forceChksum="")
        rec.call("chksum, missing", s.data_objects.chksum, f"{b}/missing")
        rec.call("chksum, a collection", s.data_objects.chksum, b)
        phys = rec.write("changing", b"before")
        s.data_objects.register(phys, f"{b}/changing", regChksum="")
        rec.write("changing", b"after!")
        rec.call("verify, changed", s.data_objects.chksum, f"{b}/changing", verifyChksum="", r_error=RErrorStack())
        rec.state("after verifying")
        rec.call("force, changed", s.data_objects.chksum, f"{b}/changing", forceChksum="")
        rec.state()

    diff.assert_same(scenario)


def test_register(diff: Differential) -> None:
    def scenario(rec: Recorder) -> None:
        s, b = rec.sess, rec.base
        phys = rec.write("f", b"register me")
        rec.call("register", s.data_objects.register, phys, f"{b}/f", regChksum="")
        rec.call("again", s.data_objects.register, phys, f"{b}/f")
        rec.call("again, forceFlag", s.data_objects.register, phys, f"{b}/f", forceFlag="")
        rec.call("missing path", s.data_objects.register, str(rec.files / "missing"), f"{b}/m")
        rec.call("relative path", s.data_objects.register, "relative/path", f"{b}/rel")
        unreadable = rec.write("unreadable", b"secret", mode=0)
        rec.call("unreadable, regChksum", s.data_objects.register, unreadable, f"{b}/u1", regChksum="")
        rec.call("unreadable, verifyChksum", s.data_objects.register, unreadable, f"{b}/u2", verifyChksum="")
        rec.call("unreadable", s.data_objects.register, unreadable, f"{b}/u3")
        (rec.files / "closed").mkdir(mode=0)
        rec.call("in a closed directory", s.data_objects.register, str(rec.files / "closed" / "x"), f"{b}/c")
        (rec.files / "dir").mkdir()
        rec.write("dir/inner", b"inner")
        rec.call("a directory", s.data_objects.register, str(rec.files / "dir"), f"{b}/d")
        rec.call("onto a collection", s.data_objects.register, phys, b)
        rec.call("missing collection", s.data_objects.register, phys, f"{b}/no/f")
        rec.call("other resource", s.data_objects.register, phys, f"{b}/r", destRescName="otherResc")
        rec.call("this resource", s.data_objects.register, phys, f"{b}/r", destRescName="demoResc")
        rec.call("verifyChksum, wrong chksum", s.data_objects.register, phys, f"{b}/v", verifyChksum="",
                 chksum="sha2:AAAA")  # fmt: skip
        rec.call("a tree", s.collections.register, str(rec.files / "dir"), f"{b}/tree")
        (rec.files / "closed").chmod(0o700)
        rec.call("a closed tree", s.collections.register, str(rec.files / "closed"), f"{b}/closed")
        rec.state()

    diff.assert_same(scenario)


def test_metadata(diff: Differential) -> None:
    def scenario(rec: Recorder) -> None:
        s, b = rec.sess, rec.base
        obj, other = s.data_objects.create(f"{b}/m"), s.data_objects.create(f"{b}/other")
        a, c, d, e, f, g = (f"{x}-{rec.tag}" for x in "acdefg")  # no AVU rows in either catalog yet

        def avu(*args: str) -> int:
            return rec.raw("MOD_AVU_METADATA_AN", MetadataRequest(*args))

        def items(o: Any) -> list[tuple[str, str, str]]:
            return sorted((m.name, m.value, m.units or "") for m in s.data_objects.get(o.path).metadata.items())

        rec.call("add", obj.metadata.add, a, "1")
        rec.call("add a duplicate", obj.metadata.add, a, "1")
        rec.call("add with units", obj.metadata.add, a, "1", "u")
        rec.call("add with empty units", obj.metadata.add, c, "1", "")
        rec.call("add empty units, raw", avu, "add", "-d", obj.path, d, "1", "")
        rec.call("remove missing", obj.metadata.remove, "zz", "1")
        rec.call("remove with wrong units", obj.metadata.remove, c, "1", "nope")
        rec.call("remove without units", obj.metadata.remove, a, "1")
        rec.call("another object has the row", other.metadata.add, a, "2")
        rec.call("set: the object's own row changes", obj.metadata.set, a, "2")
        rec.call("atomic add: the other row is added too", obj.metadata.apply_atomic_operations,
                 AVUOperation(operation="add", avu=iRODSMeta(a, "2")))  # fmt: skip
        rec.call("items", items, obj)
        rec.call("set again: one row", obj.metadata.set, a, "2")
        rec.call("shared row", other.metadata.add, c, "1")
        rec.call("set of a shared row", obj.metadata.set, c, "3")
        rec.call("rmw", avu, "rmw", "-d", obj.path, "%", "%")
        rec.call("adda", avu, "adda", "-d", obj.path, e, "1")
        rec.call("mod", avu, "mod", "-d", obj.path, d, "1", "v:9", "u:kg")
        rec.call("mod missing", avu, "mod", "-d", obj.path, "zz", "1", "v:9")
        rec.call("add to a missing object", avu, "add", "-d", f"{b}/none", e, "1")
        rec.call("add to a missing collection", avu, "add", "-C", f"{b}/none", e, "1")
        rec.call("an unknown operation", avu, "frob", "-d", obj.path, e, "1")
        ops = [AVUOperation(operation="add", avu=iRODSMeta(a, "2")),  # exists
               AVUOperation(operation="remove", avu=iRODSMeta("zz", "1")),  # does not
               AVUOperation(operation="add", avu=iRODSMeta(f, "5", "")),
               AVUOperation(operation="add", avu=iRODSMeta(g, "1", "u")),
               AVUOperation(operation="remove", avu=iRODSMeta(g, "1"))]  # units differ  # fmt: skip
        rec.call("atomic", obj.metadata.apply_atomic_operations, *ops)
        rec.call("atomic, missing object", s.metadata.apply_atomic_operations, DataObject, f"{b}/none", *ops)
        rec.call("atomic, missing collection", s.metadata.apply_atomic_operations, Collection, f"{b}/none", *ops)
        rec.call("atomic, collection", s.metadata.apply_atomic_operations, Collection, b, *ops)
        rec.call("items at the end", items, obj)
        rec.call("items of the other", items, other)
        rec.state()

    diff.assert_same(scenario)


def test_genquery(diff: Differential) -> None:
    names = [f"f{i:04d}" for i in range(1100)] + ["F0003", "a b", "x'y", "Zed", "_u", "ü"]

    def scenario(rec: Recorder) -> None:
        s, b = rec.sess, rec.base
        (rec.files / "tree").mkdir()
        for i, n in enumerate(names):
            rec.write(f"tree/{n}", b"x" * (i % 1100))
        s.collections.register(str(rec.files / "tree"), f"{b}/t")
        t = f"{b}/t"

        def q(*conds: Any, cs: bool = True) -> list[str]:
            query = s.query(DataObject.name, case_sensitive=cs).filter(Collection.name == t)
            for c in conds:
                query = query.filter(c)
            return sorted(r[DataObject.name] for r in query)

        for label, cond in [("=", DataObject.name == "f0007"), ("<>", DataObject.name != "f0007"),
                            ("like", Like(DataObject.name, "f00%")), ("like _", Like(DataObject.name, "f000_")),
                            ("not like", NotLike(DataObject.name, "f00%")),
                            ("in", In(DataObject.name, ["f0001", "f0002", "f9999"])),
                            ("between", Between(DataObject.name, ["f0010", "f0012"])),
                            ("between sizes", Between(DataObject.size, [5, 7])), ("<", DataObject.size < 3),
                            (">", DataObject.size > 1097), ("<=", DataObject.size <= 1),
                            (">=", DataObject.size >= 1098),
                            ("name <", DataObject.name < "F1"), ("name >", DataObject.name > "f1098"),
                            ("quote", DataObject.name == "x'y"), ("space", DataObject.name == "a b"),
                            ("umlaut", DataObject.name == "ü"), ("no rows", DataObject.name == "nope")]:  # fmt: skip
            rec.call(label, q, cond)
        rec.call("case-insensitive", q, DataObject.name == "F0003", cs=False)
        rec.call("case-insensitive like", q, Like(DataObject.name, "z%"), cs=False)
        base_q = s.query(DataObject.name, DataObject.size).filter(Collection.name == t)
        rec.call("batches", lambda: [len(batch) for batch in base_q.get_batches()])
        rec.call("all() is one page", lambda: len(base_q.all()))
        rec.call("open statements", open_statements, s, t)
        rec.call("limit 100 batches", lambda: [len(batch) for batch in base_q.limit(100).get_batches()])
        ordered = s.query(DataObject.name).filter(Collection.name == t).order_by(DataObject.name)
        rec.call("ordered", lambda: [r[DataObject.name] for r in ordered.limit(8).all()])
        rec.call("offset", lambda: [r[DataObject.name] for r in ordered.offset(10).limit(2).all()])
        rec.call("desc first", lambda: s.query(DataObject.name).filter(Collection.name == t)
                 .order_by(DataObject.name, order="desc").first()[DataObject.name])  # fmt: skip
        rec.call("count, sum, max", lambda: [tuple(sorted((c.icat_key, v) for c, v in row.items())) for row in
                 s.query().count(DataObject.id).sum(DataObject.size).max(DataObject.size)
                 .filter(Collection.name == t).execute()])  # fmt: skip
        rec.call("count, no rows", lambda: [tuple(row.values()) for row in
                 s.query().count(DataObject.id).filter(Collection.name == f"{t}/none").execute()])  # fmt: skip
        rec.call("one object, all columns", row_values, s.query(DataObject).filter(Collection.name == t)
                 .filter(DataObject.name == "f0005"), ("D_DATA_ID", "D_COLL_ID", "D_RESC_ID"))  # fmt: skip
        rec.call("collection columns", row_values, s.query(Collection).filter(Collection.name == t), ("COLL_ID",))
        rec.call("collections like", lambda: sorted(r[Collection.name] for r in
                 s.query(Collection.name).filter(Like(Collection.name, b + "%"))))  # fmt: skip

    diff.assert_same(scenario)


def test_what_the_product_sends(diff: Differential) -> None:
    """The calls irods_ingestd makes for one file, in its order (ingest.py)."""

    def scenario(rec: Recorder) -> None:
        s, b = rec.sess, rec.base
        coll, opts = f"{b}/zone/d1/d2", {"destRescName": "demoResc"}
        rec.call("collections.create", s.collections.create, coll, recurse=True)
        rec.call("collections.exists", s.collections.exists, coll)
        lookup = s.query(DataObject.name, DataObject.size, DataObject.checksum, DataObject.path,
                         DataObject.replica_status).filter(Collection.name == coll)  # fmt: skip
        rec.call("look-up, none", lambda: list(lookup.filter(In(DataObject.name, ["f", "g"]))))
        rec.call("open w", rec.write_object, f"{coll}/f.part", b"payload", **opts)
        rec.call("chksum", s.data_objects.chksum, f"{coll}/f.part")
        rec.call("rename", rename, s, f"{coll}/f.part", f"{coll}/f")
        rec.call("chksum, forceChksum", s.data_objects.chksum, f"{coll}/f", forceChksum="")
        ops = [AVUOperation(operation="add", avu=iRODSMeta(f"ingest::{k}", v, u)) for k, v, u in
               [("source_host", "h", ""), ("size", "7", "bytes"), ("mtime", "1", "ns"), ("version", "0.1", "")]]
        rec.call("apply_atomic_operations", s.metadata.apply_atomic_operations, DataObject, f"{coll}/f", *ops)
        rec.call("AVU query", lambda: sorted((r[DataObjectMeta.name], r[DataObjectMeta.value]) for r in
                 s.query(DataObjectMeta.name, DataObjectMeta.value).filter(Collection.name == coll)
                 .filter(DataObject.name == "f")))  # fmt: skip
        rec.call("look-up", lambda: sorted(tuple(r.values()) for r in lookup.filter(In(DataObject.name, ["f", "g"]))))
        phys = rec.write("landing", b"landing file")
        rec.call("register", s.data_objects.register, phys, f"{coll}/g", regChksum="", **opts)
        rec.call("exists", s.data_objects.exists, f"{coll}/g")
        rec.call("unregister", s.data_objects.unregister, f"{coll}/g")
        rec.call("put", s.data_objects.put, phys, f"{coll}/h", num_threads=0, **opts)
        rec.call("unlink, force", s.data_objects.unlink, f"{coll}/h", force=True)
        rec.state()

    diff.assert_same(scenario)
