"""iRODS test server: counters and fault injection (marked ``standin``); unknown APIs and 16 concurrent clients
(on the real server too)."""

from __future__ import annotations

import os
import threading
import time

import pytest
from irods.column import Like
from irods.exception import (
    CAT_NO_ACCESS_PERMISSION,
    CAT_SQL_ERR,
    SYS_UNMATCHED_API_NUM,
    UNIX_FILE_OPEN_ERR,
    NetworkException,
)
from irods.message import CollectionRequest, StringStringMap, iRODSMessage
from irods.models import Collection, DataObject

from tests.irods_server.harness import server_readable_dir

MiB = 1024 * 1024


@pytest.fixture
def coll(irods, request):  # noqa: F811
    path = f"{irods.home}/{request.node.name}-{os.getpid()}"  # per session: concurrent sessions share the server
    with irods.session() as s:
        if s.collections.exists(path):
            s.collections.remove(path, recurse=True, force=True)
        s.collections.create(path)
    if not irods.real:
        irods.reset_counters()
    return path


@pytest.mark.standin
def test_counters(irods, coll, tmp_path):  # noqa: F811
    sizes = [10, 20_000, 9 * MiB]
    with irods.session() as s, server_readable_dir() as d:
        for i, size in enumerate(sizes):
            (tmp_path / f"f{i}").write_bytes(b"a" * size)
            s.data_objects.put(str(tmp_path / f"f{i}"), f"{coll}/f{i}")
            (d / f"f{i}").write_bytes(b"a" * size)
        s.data_objects.register(str(d / "f0"), f"{coll}/r0")
        s.data_objects.register(str(d / "f1"), f"{coll}/r1")
    c = irods.counters()
    assert c["DATA_OBJ_OPEN"] == 3 and c["DATA_OBJ_OPEN_CREATE"] == 3
    assert c["DATA_OBJ_WRITE"] == 1 + 1 + 2  # 9 MiB goes as an 8 MiB and a 1 MiB write
    assert c["DATA_OBJ_WRITE_BYTES"] == sum(sizes)
    assert c["DATA_OBJ_CLOSE"] == 3
    assert c["PHY_PATH_REG"] == 2
    irods.reset_counters()
    assert "PHY_PATH_REG" not in irods.counters()


def test_unknown_api(irods):  # noqa: F811
    """A real server does not answer an API number it does not know (the client waits for its timeout), and
    goes on serving the connection."""
    with irods.session() as s:
        assert s.collections.exists(irods.home)
        conn = s.pool.get_connection()
        try:
            conn.socket.settimeout(1.5)
            conn.send(iRODSMessage("RODS_API_REQ", int_info=9999))
            with pytest.raises(NetworkException):
                conn.recv()
            conn.send(iRODSMessage("RODS_API_REQ", int_info=681, msg=CollectionRequest(  # COLL_CREATE
                collName=irods.home, KeyValPair_PI=StringStringMap({"recursiveOpr": ""}))))
            assert conn.recv().int_info == 0  # the same connection still works
        finally:
            conn.release(destroy=True)
            conn.disconnect()
        assert s.collections.exists(irods.home)


@pytest.mark.standin
def test_unimplemented_api_is_refused(irods):  # noqa: F811
    """An API a real server has but the test server lacks is refused at once (a difference, see README)."""
    with irods.session() as s, s.pool.get_connection() as conn:
        conn.send(iRODSMessage("RODS_API_REQ", int_info=696))  # DATA_OBJ_COPY
        with pytest.raises(SYS_UNMATCHED_API_NUM):
            conn.recv()
        assert s.collections.exists(irods.home)


@pytest.mark.standin
def test_refuse_connections(irods):  # noqa: F811
    with irods.session() as old:
        assert old.collections.exists(irods.home)
        irods.refuse_connections()
        with irods.session() as s, pytest.raises(NetworkException):
            s.collections.exists(irods.home)
        assert old.collections.exists(irods.home)  # established connections keep working
        irods.refuse_connections(False)
    with irods.session() as s:
        assert s.collections.exists(irods.home)
    assert irods.counters()["connections_refused"] == 1


@pytest.mark.standin
def test_drop_connections(irods):  # noqa: F811
    with irods.session() as s:
        assert s.collections.exists(irods.home)
        irods.drop_connections()
        with pytest.raises(NetworkException):
            s.collections.exists(irods.home)
        assert s.collections.exists(irods.home)  # the pool reconnects


@pytest.mark.standin
def test_delay(irods):  # noqa: F811
    with irods.session() as s:
        assert s.collections.exists(irods.home)
        irods.set_delay(0.3)
        t0 = time.monotonic()
        assert s.collections.exists(irods.home)
        assert time.monotonic() - t0 >= 0.3
        irods.set_delay(0)
        t0 = time.monotonic()
        assert s.collections.exists(irods.home)
        assert time.monotonic() - t0 < 0.3
        # a client timeout shorter than the delay fails the call
        irods.set_delay(1.5)
        s.connection_timeout = 0.5
        with pytest.raises(NetworkException):
            s.collections.exists(irods.home)
        irods.reset_faults()


@pytest.mark.standin
def test_fail_next_by_name_and_number(irods, coll):  # noqa: F811
    with irods.session() as s:
        irods.fail_next("COLL_CREATE", count=2, error=-818000)
        for _ in range(2):
            with pytest.raises(CAT_NO_ACCESS_PERMISSION):
                s.collections.create(f"{coll}/x")
        s.collections.create(f"{coll}/x")
        irods.fail_next(702, error=-806000)
        with pytest.raises(CAT_SQL_ERR):
            s.collections.get(f"{coll}/x")
        assert s.collections.get(f"{coll}/x").name == "x"
        irods.fail_next("GEN_QUERY", count=5, error=-806000)
        irods.reset_faults()
        assert s.collections.exists(f"{coll}/x")
    assert irods.counters()["faults_injected"] == 3


@pytest.mark.standin
def test_fail_write_mid_put(irods, coll, tmp_path):  # noqa: F811
    local = tmp_path / "big"
    local.write_bytes(b"z" * (20 * MiB))
    irods.fail_next("DATA_OBJ_WRITE", error=-510028, after_bytes=8 * MiB)
    with irods.session() as s:
        with pytest.raises(UNIX_FILE_OPEN_ERR):
            s.data_objects.put(str(local), f"{coll}/big")
        c = irods.counters()
        assert c["DATA_OBJ_WRITE_BYTES"] == 8 * MiB
        assert c["faults_injected"] == 1
        obj = s.data_objects.get(f"{coll}/big")
        assert obj.size != 20 * MiB
        # it works again afterwards, and overwrites the partial object
        s.data_objects.put(str(local), f"{coll}/big")
        assert s.data_objects.get(f"{coll}/big").size == 20 * MiB


@pytest.mark.standin
def test_fail_close(irods, coll, tmp_path):  # noqa: F811
    local = tmp_path / "f"
    local.write_bytes(b"0123456789")
    # many: Python's io layer retries a failed close when the file object is garbage collected
    irods.fail_next("DATA_OBJ_CLOSE", count=100, error=-510005)
    s = irods.session()
    with pytest.raises(UNIX_FILE_OPEN_ERR):
        s.data_objects.put(str(local), f"{coll}/f")
    assert s.data_objects.get(f"{coll}/f").replicas[0].status == "2"  # intermediate while the agent lives
    s.cleanup()
    with irods.session() as s2:
        obj = s2.data_objects.get(f"{coll}/f")
        assert obj.replicas[0].status == "0"  # stale once the writer went away without a close
    irods.reset_faults()


@pytest.mark.standin
def test_restart_with_live_session(irods):  # noqa: F811
    with irods.session() as s:
        assert s.collections.exists(irods.home)
        irods.restart()
        with pytest.raises(NetworkException):
            s.collections.exists(irods.home)
        assert s.collections.exists(irods.home)


def test_16_clients_put_2000_files(irods, coll, tmp_path):  # noqa: F811
    n_clients, per_client = 16, 125
    for i in range(per_client):
        (tmp_path / f"src{i}").write_bytes(f"file {i}\n".encode() * (i + 1))
    errors: list[BaseException] = []
    start = threading.Barrier(n_clients)

    def client(k: int) -> None:
        try:
            with irods.session() as s:
                s.collections.create(f"{coll}/c{k}")
                start.wait()
                for i in range(per_client):
                    s.data_objects.put(str(tmp_path / f"src{i}"), f"{coll}/c{k}/f{i}")
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(n_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    with irods.session() as s:
        rows = s.query().count(DataObject.id).filter(Like(Collection.name, f"{coll}/c%")).execute()
        assert int(rows[0][DataObject.id]) == n_clients * per_client
        rows = s.query(DataObject.size).filter(Collection.name == f"{coll}/c7").filter(DataObject.name == "f9").all()
        assert int(rows[0][DataObject.size]) == len(b"file 9\n") * 10
    if irods.real:
        return  # a real server has no counters
    c = irods.counters()
    assert c["DATA_OBJ_OPEN_CREATE"] == n_clients * per_client
    assert c["connections_accepted"] >= n_clients
