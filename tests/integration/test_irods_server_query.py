"""iRODS test server: metadata, ACLs and GenQuery (operators, joins, paging) through python-irodsclient."""

from __future__ import annotations

import pytest
from irods.access import iRODSAccess
from irods.api_number import api_number
from irods.column import Between, In, Like, NotLike
from irods.exception import (
    CAT_INVALID_ARGUMENT,
    CAT_INVALID_USER,
    CAT_SUCCESS_BUT_WITH_NO_INFO,
    CATALOG_ALREADY_HAS_ITEM_BY_THAT_NAME,
)
from irods.message import MetadataRequest, iRODSMessage
from irods.meta import AVUOperation, iRODSMeta
from irods.models import Collection, CollectionMeta, DataObject, DataObjectMeta

from tests.irods_server.harness import server_readable_dir


def raw_avu(sess, *args):
    """imeta operations PRC has no method for (rmw, mod, adda)."""
    body = MetadataRequest(*args)
    with sess.pool.get_connection() as conn:
        conn.send(iRODSMessage("RODS_API_REQ", msg=body, int_info=api_number["MOD_AVU_METADATA_AN"]))
        return conn.recv().int_info


@pytest.fixture(scope="module")
def many(irods_server):  # noqa: F811
    """1200 registered files f0000..f1199 (file i has i bytes) under one collection, in a single call."""
    path = f"{irods_server.home}/many"
    with server_readable_dir("irods-many-") as src, irods_server.session() as s:
        for i in range(1200):
            (src / f"f{i:04d}").write_bytes(b"x" * i)
        if s.collections.exists(path):
            s.collections.remove(path, recurse=True, force=True)
        s.collections.register(str(src), path)
        yield path
        s.collections.remove(path, recurse=True, force=True)


def test_metadata_add_set_remove_and_query(sess, coll):
    obj = sess.data_objects.create(f"{coll}/m")
    sess.metadata.add(DataObject, obj.path, iRODSMeta("color", "red"))
    obj.metadata.add("color", "blue", "u1")
    obj.metadata.add("size", "10")
    with pytest.raises(CATALOG_ALREADY_HAS_ITEM_BY_THAT_NAME):
        obj.metadata.add("color", "red")
    assert sorted((m.name, m.value, m.units) for m in obj.metadata.items()) == [
        ("color", "blue", "u1"), ("color", "red", None), ("size", "10", None)]  # fmt: skip
    obj.metadata.set("color", "green")
    assert [m.value for m in obj.metadata.get_all("color")] == ["green"]
    obj.metadata.remove("size", "10")
    assert obj.metadata.keys() == ["color"]
    # AVU on a collection, and wildcard removal
    with pytest.raises(CAT_SUCCESS_BUT_WITH_NO_INFO):  # nothing to remove
        obj.metadata.remove("size", "10")
    with pytest.raises(CAT_SUCCESS_BUT_WITH_NO_INFO):  # the units are part of the AVU
        obj.metadata.remove("color", "green", "u1")
    # AVU on a collection; iRODS 5 removes no AVUs by wildcard
    sess.metadata.add(Collection, coll, iRODSMeta("project", "p1"))
    sess.metadata.add(Collection, coll, iRODSMeta("projtag", "p2", ""))  # empty units: none
    assert {(m.name, m.units) for m in sess.metadata.get(Collection, coll)} == {("project", None), ("projtag", None)}
    with pytest.raises(CAT_INVALID_ARGUMENT):
        raw_avu(sess, "rmw", "-C", coll, "proj%", "%")
    sess.metadata.remove(Collection, coll, iRODSMeta("projtag", "p2"))
    assert [m.name for m in sess.metadata.get(Collection, coll)] == ["project"]
    # query by AVU
    obj2 = sess.data_objects.create(f"{coll}/m2")
    obj2.metadata.add("color", "green")
    rows = sess.query(DataObject.name).filter(Collection.name == coll).filter(
        DataObjectMeta.name == "color").filter(DataObjectMeta.value == "green").all()  # fmt: skip
    assert sorted(r[DataObject.name] for r in rows) == ["m", "m2"]


def test_metadata_rmw_and_atomic(sess, coll):
    obj = sess.data_objects.create(f"{coll}/a")
    obj.metadata.apply_atomic_operations(
        AVUOperation(operation="add", avu=iRODSMeta("a1", "v1")),
        AVUOperation(operation="add", avu=iRODSMeta("a2", "v2", "u2")),
        AVUOperation(operation="add", avu=iRODSMeta("tmp_x", "1")),
        AVUOperation(operation="add", avu=iRODSMeta("tmp_y", "2")),
    )
    assert len(obj.metadata.items()) == 4
    # in one atomic call: an AVU that exists is no error to add, nor one that does not to remove
    obj.metadata.apply_atomic_operations(
        AVUOperation(operation="remove", avu=iRODSMeta("a2", "v2", "u2")),
        AVUOperation(operation="remove", avu=iRODSMeta("tmp_x", "1")),
        AVUOperation(operation="remove", avu=iRODSMeta("tmp_y", "2", "wrong units")),
        AVUOperation(operation="remove", avu=iRODSMeta("never", "there")),
        AVUOperation(operation="add", avu=iRODSMeta("a1", "v1")),
    )
    assert sorted(m.name for m in sess.data_objects.get(obj.path).metadata.items()) == ["a1", "tmp_y"]
    for op in ("rmw", "adda"):  # gone in iRODS 5
        with pytest.raises(CAT_INVALID_ARGUMENT):
            raw_avu(sess, op, "-d", obj.path, "tmp_%", "%")
    raw_avu(sess, "mod", "-d", obj.path, "a1", "v1", "v:v9", "u:kg")
    assert sorted((m.name, m.value, m.units) for m in sess.metadata.get(DataObject, obj.path)) == [
        ("a1", "v9", "kg"), ("tmp_y", "2", None)]  # fmt: skip
    with pytest.raises(CAT_SUCCESS_BUT_WITH_NO_INFO):
        raw_avu(sess, "mod", "-d", obj.path, "a1", "v1", "v:v10")
    # collection atomic
    c = sess.collections.get(coll)
    c.metadata.apply_atomic_operations(AVUOperation(operation="add", avu=iRODSMeta("ca", "cv")))
    rows = sess.query(Collection.name).filter(CollectionMeta.name == "ca").all()
    assert coll in [r[Collection.name] for r in rows]  # other sessions' collections may carry "ca" too
    rows = sess.query(Collection.name).filter(CollectionMeta.name == "ca").filter(Collection.name == coll).all()
    assert [r[Collection.name] for r in rows] == [coll]


def test_acls(irods_server_factory):  # noqa: F811
    srv = irods_server_factory(extra_users=[("alice", "apw")])
    with srv.session() as s:
        s.collections.create(f"{srv.home}/shared/sub")
        obj = s.data_objects.create(f"{srv.home}/shared/obj")
        s.acls.set(iRODSAccess("read", obj.path, "alice", srv.zone))
        acl = {(a.user_name, a.access_name) for a in s.acls.get(obj)}
        assert acl == {("rods", "own"), ("alice", "read_object")}
        s.acls.set(iRODSAccess("write", obj.path, "alice", srv.zone))
        assert {(a.user_name, a.access_name) for a in s.acls.get(obj)} == {("rods", "own"), ("alice", "modify_object")}
        s.acls.set(iRODSAccess("null", obj.path, "alice", srv.zone))
        assert {a.user_name for a in s.acls.get(obj)} == {"rods"}
        # collection, recursive, inheritance
        shared = s.collections.get(f"{srv.home}/shared")
        s.acls.set(iRODSAccess("own", shared.path, "alice", srv.zone), recursive=True)
        assert ("alice", "own") in {(a.user_name, a.access_name) for a in s.acls.get(shared)}
        assert "alice" in {a.user_name for a in s.acls.get(s.data_objects.get(obj.path))}
        s.acls.set(iRODSAccess("inherit", shared.path))
        assert s.collections.get(shared.path).inheritance is True or s.collections.get(shared.path).inheritance
        newobj = s.data_objects.create(f"{shared.path}/new")
        assert "alice" in {a.user_name for a in s.acls.get(newobj)}
        with pytest.raises(CAT_INVALID_USER):
            s.acls.set(iRODSAccess("read", obj.path, "nobody", srv.zone))


def test_genquery_operators(sess, many):
    def names(*conds):
        q = sess.query(DataObject.name).filter(Collection.name == many)
        for c in conds:
            q = q.filter(c)
        return sorted(r[DataObject.name] for r in q.get_results())

    assert names(DataObject.name == "f0007") == ["f0007"]
    assert len(names(DataObject.name != "f0007")) == 1199
    assert len(names(Like(DataObject.name, "f00%"))) == 100
    assert len(names(NotLike(DataObject.name, "f00%"))) == 1100
    assert names(In(DataObject.name, ["f0001", "f0002", "f9999"])) == ["f0001", "f0002"]
    assert names(Between(DataObject.name, ["f0010", "f0012"])) == ["f0010", "f0011", "f0012"]
    assert names(DataObject.size < 3) == ["f0000", "f0001", "f0002"]
    assert names(DataObject.size <= 1) == ["f0000", "f0001"]
    assert names(DataObject.size > 1197) == ["f1198", "f1199"]
    assert names(DataObject.size >= 1198) == ["f1198", "f1199"]
    assert names(DataObject.size >= 5, DataObject.size < 7) == ["f0005", "f0006"]
    # case-insensitive
    q = sess.query(DataObject.name).filter(Collection.name == many).filter(DataObject.name == "F0003")
    assert [r[DataObject.name] for r in q.get_results()] == []
    q = sess.query(DataObject.name, case_sensitive=False).filter(DataObject.name == "F0003")
    assert [r[DataObject.name] for r in q.get_results()] == ["f0003"]
    # no rows
    assert names(DataObject.name == "nope") == []
    # aggregates
    row = sess.query().count(DataObject.id).sum(DataObject.size).filter(
        Collection.name == many).execute()[0]  # fmt: skip
    assert int(row[DataObject.id]) == 1200 and int(row[DataObject.size]) == sum(range(1200))


def test_genquery_paging(irods, sess, many):  # noqa: F811
    q = sess.query(DataObject.name, DataObject.size).filter(Collection.name == many)
    batches = [len(b) for b in q.get_batches()]
    assert batches == [500, 500, 200]
    all_names = [r[DataObject.name] for r in q]
    assert len(all_names) == 1200 and len(set(all_names)) == 1200
    # .all() gets one page (like a real server) and closes the query
    assert len(q.all()) == 500
    # limit / offset
    q = sess.query(DataObject.name).filter(Collection.name == many).order_by(DataObject.name)
    assert [r[DataObject.name] for r in q.limit(3).all()] == ["f0000", "f0001", "f0002"]
    assert [r[DataObject.name] for r in q.offset(10).limit(2).all()] == ["f0010", "f0011"]
    q = sess.query(DataObject.name).filter(Collection.name == many).order_by(DataObject.name, order="desc")
    assert q.first()[DataObject.name] == "f1199"
    # continueInx paging with a small page size
    q = sess.query(DataObject.name).filter(Collection.name == many).limit(100)
    assert sum(len(b) for b in q.get_batches()) == 1200


def test_collection_and_object_models(sess, many):
    c = sess.collections.get(many)
    assert len(c.data_objects) == 1200
    obj = c.data_objects[5]
    assert obj.replicas[0].resource_name == "demoResc"
    assert sess.data_objects.exists(f"{many}/f0005")
    rows = sess.query(Collection.name, DataObject.name, DataObject.checksum).filter(
        DataObject.name == "f0005").all()  # fmt: skip
    assert [(r[Collection.name], r[DataObject.name]) for r in rows] == [(many, "f0005")]
