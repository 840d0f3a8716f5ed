"""python-irodsclient 3.3 against the server under test over real TCP: connection, auth, collections, data.

Every test runs against the real iRODS when one is configured (and against the test server in the second
pass); those marked ``standin`` look at the test server's own counters, vault or restart."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from irods.exception import (
    CAT_COLLECTION_NOT_EMPTY,
    CAT_INVALID_AUTHENTICATION,
    CAT_INVALID_USER,
    CAT_UNKNOWN_COLLECTION,
    CATALOG_ALREADY_HAS_ITEM_BY_THAT_NAME,
    SYS_RESC_DOES_NOT_EXIST,
    UNIX_FILE_OPEN_ERR,
    UNIX_FILE_STAT_ERR,
    CollectionDoesNotExist,
    DataObjectDoesNotExist,
)
from irods.manager.data_object_manager import Server_Checksum_Warning
from irods.message import RErrorStack
from irods.session import iRODSSession

from tests.expect import sha2
from tests.irods_server.harness import REPO_ROOT, server_readable_dir

MiB = 1024 * 1024


def trash_of(irods, path: str) -> str:  # type: ignore[no-untyped-def]
    """Where unlink or remove without force puts `path`."""
    return f"/{irods.zone}/trash" + path[len(f"/{irods.zone}") :]


def ends_like(physical: str, logical: str) -> bool:
    """A vault path (the real server's or the test server's) ends with the logical path below the zone."""
    return physical.endswith("/" + logical.split("/", 2)[2])


# --- connection and authentication -----------------------------------------------------------
def test_connect_without_negotiation(irods, sess):  # noqa: F811
    assert sess.server_version == (5, 0, 2)  # the test server reports the real one's version
    assert sess.collections.get(irods.home).name == irods.user


@pytest.mark.standin
def test_authentication_framework_round_trips(irods, sess):  # noqa: F811
    assert sess.collections.exists(irods.home)
    counters = irods.counters()
    assert counters["AUTHENTICATION"] == 2  # 4.3 auth framework: two round trips
    assert "AUTH_REQUEST" not in counters


def test_connect_with_negotiation(irods):  # noqa: F811
    with irods.session(irods_client_server_negotiation="request_server_negotiation") as s:
        assert s.collections.exists(irods.home)


def test_connect_with_env_file_and_auth_file(irods, tmp_path):  # noqa: F811
    from irods.password_obfuscation import encode

    env_file = irods.write_env_file(tmp_path / "irods_environment.json")
    env = json.loads(env_file.read_text())
    assert not any("password" in key for key in env)
    env["irods_client_server_negotiation"] = "request_server_negotiation"
    env_file.write_text(json.dumps(env))
    auth_file = tmp_path / ".irodsA"
    auth_file.write_text(encode(irods.password))
    with iRODSSession(irods_env_file=str(env_file), irods_authentication_file=str(auth_file)) as s:
        assert s.collections.exists(irods.home)


def test_negotiation_fails_when_client_requires_ssl_and_server_refuses(irods_server_factory):  # noqa: F811
    srv = irods_server_factory(cs_neg_policy="CS_NEG_REFUSE")
    with srv.session(irods_client_server_negotiation="request_server_negotiation",
                     irods_client_server_policy="CS_NEG_REQUIRE") as s:  # fmt: skip
        with pytest.raises(Exception, match="negotiation"):
            s.collections.exists(srv.home)
    with srv.session(irods_client_server_negotiation="request_server_negotiation") as s:
        assert s.collections.exists(srv.home)


def test_legacy_auth_with_4_2_server(irods_server_factory):  # noqa: F811
    srv = irods_server_factory(version="4.2.11")
    with srv.session() as s:
        assert s.server_version == (4, 2, 11)
        assert s.collections.exists(srv.home)
    counters = srv.counters()
    assert counters["AUTH_REQUEST"] == 1 and counters["AUTH_RESPONSE"] == 1
    with srv.session(password="wrong") as s, pytest.raises(CAT_INVALID_AUTHENTICATION):
        s.collections.exists(srv.home)


def test_wrong_password(irods):  # noqa: F811
    with irods.session(password="not-the-password") as s, pytest.raises(CAT_INVALID_AUTHENTICATION):
        s.collections.get(irods.home)
    with irods.session(user="nobody") as s, pytest.raises(CAT_INVALID_USER):
        s.collections.get(irods.home)
    with irods.session(user="public", password="") as s, pytest.raises(CAT_INVALID_USER):  # a group
        s.collections.get(irods.home)


@pytest.mark.standin
def test_failed_logins_are_counted(irods):  # noqa: F811
    for user in ("rods", "nobody"):
        with irods.session(user=user, password="wrong") as s, pytest.raises((CAT_INVALID_AUTHENTICATION,
                                                                             CAT_INVALID_USER)):  # fmt: skip
            s.collections.get(irods.home)
    assert irods.counters()["auth_failed"] == 2


def test_second_user(irods_server_factory):  # noqa: F811
    srv = irods_server_factory(extra_users=[("alice", "apw")])
    with srv.session(user="alice", password="apw") as s:
        home = s.collections.get(f"/{srv.zone}/home/alice")
        assert home.owner_name == "alice"


# --- collections -----------------------------------------------------------------------------
def test_collections(sess, coll):
    c = sess.collections.create(f"{coll}/a/b/c")
    assert c.path == f"{coll}/a/b/c"
    assert sess.collections.exists(f"{coll}/a/b")
    assert not sess.collections.exists(f"{coll}/nope")
    with pytest.raises(CollectionDoesNotExist):
        sess.collections.get(f"{coll}/nope")
    # recursive create of an existing collection is fine, non-recursive is not
    sess.collections.create(f"{coll}/a/b/c")
    with pytest.raises(CATALOG_ALREADY_HAS_ITEM_BY_THAT_NAME):
        sess.collections.create(f"{coll}/a/b/c", recurse=False)
    with pytest.raises(CAT_UNKNOWN_COLLECTION):
        sess.collections.create(f"{coll}/x/y", recurse=False)
    assert sorted(s.name for s in sess.collections.get(f"{coll}/a").subcollections) == ["b"]
    # move: into an existing collection, then rename
    sess.collections.create(f"{coll}/dest")
    sess.collections.move(f"{coll}/a", f"{coll}/dest")
    assert sess.collections.exists(f"{coll}/dest/a/b/c")
    assert not sess.collections.exists(f"{coll}/a")
    sess.collections.move(f"{coll}/dest/a", f"{coll}/renamed")
    assert sess.collections.exists(f"{coll}/renamed/b/c")
    # remove
    with pytest.raises(CAT_COLLECTION_NOT_EMPTY):
        sess.collections.remove(f"{coll}/renamed", recurse=False)
    sess.collections.remove(f"{coll}/renamed", recurse=True, force=True)
    assert not sess.collections.exists(f"{coll}/renamed/b")


# --- data objects ----------------------------------------------------------------------------
def test_put_small_files_and_read_back(sess, coll, tmp_path):
    for i, size in enumerate([0, 1, 100, 8191, 8192, 100_000, 9 * MiB]):
        data = os.urandom(size)
        local = tmp_path / f"f{i}"
        local.write_bytes(data)
        sess.data_objects.put(str(local), f"{coll}/f{i}")
        obj = sess.data_objects.get(f"{coll}/f{i}")
        assert obj.size == size
        assert obj.replicas[0].status == "1"
        assert ends_like(obj.replicas[0].path, obj.path)
        with obj.open("r") as f:
            assert f.read() == data
    # put into a collection uses the file's basename
    sess.data_objects.put(str(tmp_path / "f2"), coll)
    assert sess.data_objects.exists(f"{coll}/f2")
    # get to a local file
    sess.data_objects.get(f"{coll}/f5", str(tmp_path / "back"))
    assert (tmp_path / "back").read_bytes() == (tmp_path / "f5").read_bytes()


@pytest.mark.standin
def test_vault_holds_the_bytes(irods, sess, coll, tmp_path):  # noqa: F811
    local = tmp_path / "x"
    local.write_bytes(b"vault bytes")
    for name in ("a", "b", "c"):
        sess.data_objects.put(str(local), f"{coll}/{name}")
        assert irods.vault_path(f"{coll}/{name}").read_bytes() == b"vault bytes"
    sess.data_objects.unlink(f"{coll}/a", force=True)
    assert not irods.vault_path(f"{coll}/a").exists()
    sess.data_objects.unregister(f"{coll}/b")  # oprType 26 keeps the bytes even of an object in the vault
    assert irods.vault_path(f"{coll}/b").read_bytes() == b"vault bytes"
    sess.data_objects.move(f"{coll}/c", f"{coll}/d")  # a rename moves the file in the vault
    assert irods.vault_path(f"{coll}/d").read_bytes() == b"vault bytes"
    assert not irods.vault_path(f"{coll}/c").exists()


def test_put_overwrites_and_create(sess, coll, tmp_path):
    local = tmp_path / "x"
    local.write_bytes(b"first version, long")
    sess.data_objects.put(str(local), f"{coll}/x", regChksum=True)
    assert sess.data_objects.get(f"{coll}/x").checksum == sha2(b"first version, long")
    local.write_bytes(b"second")
    sess.data_objects.put(str(local), f"{coll}/x")  # no force flag: replaced, like a real server
    obj = sess.data_objects.get(f"{coll}/x")
    assert obj.size == 6 and not obj.checksum
    with obj.open("r") as f:
        assert f.read() == b"second"
    created = sess.data_objects.create(f"{coll}/empty")
    assert created.size == 0
    sess.data_objects.create(f"{coll}/empty")  # create on an existing object succeeds
    sess.data_objects.create(f"{coll}/x")
    assert sess.data_objects.get(f"{coll}/x").size == 0
    with sess.data_objects.open(f"{coll}/empty", "w") as f:
        f.write(b"written through open")
    with sess.data_objects.open(f"{coll}/empty", "r+") as f:
        f.seek(8)
        f.write(b"THROUGH")
        f.seek(0)
        assert f.read() == b"written THROUGH open"
    with sess.data_objects.open(f"{coll}/empty", "a") as f:
        f.write(b"!")
    with sess.data_objects.open(f"{coll}/empty", "r") as f:
        assert f.read() == b"written THROUGH open!"


def test_unlink_and_rename(irods, sess, coll, tmp_path):  # noqa: F811
    local = tmp_path / "x"
    local.write_bytes(b"data")
    for name in ("a", "b", "c"):
        sess.data_objects.put(str(local), f"{coll}/{name}")
    trash = trash_of(irods, coll)
    try:
        sess.data_objects.unlink(f"{coll}/a", force=True)
        sess.data_objects.unlink(f"{coll}/b")  # without force: into the trash
        assert not sess.data_objects.exists(f"{coll}/a") and not sess.data_objects.exists(f"{coll}/b")
        assert sess.data_objects.exists(f"{trash}/b") and not sess.data_objects.exists(f"{trash}/a")
        with pytest.raises(DataObjectDoesNotExist):
            sess.data_objects.get(f"{coll}/a")
        sess.data_objects.move(f"{coll}/c", f"{coll}/d")
        assert sess.data_objects.exists(f"{coll}/d") and not sess.data_objects.exists(f"{coll}/c")
        sess.collections.create(f"{coll}/sub")
        sess.data_objects.move(f"{coll}/d", f"{coll}/sub")
        obj = sess.data_objects.get(f"{coll}/sub/d")
        assert ends_like(obj.replicas[0].path, obj.path)
        with obj.open("r") as f:
            assert f.read() == b"data"
        # a new object where the old one was does not collide with the moved one
        sess.data_objects.put(str(local), f"{coll}/c")
        sess.collections.move(f"{coll}/sub", f"{coll}/sub2")
        with sess.data_objects.open(f"{coll}/sub2/d", "r") as f:
            assert f.read() == b"data"
    finally:
        if sess.collections.exists(trash):
            sess.collections.remove(trash, recurse=True, force=True)


def test_parallel_put_50_mib(sess, coll, tmp_path):
    data = os.urandom(50 * MiB)
    local = tmp_path / "big"
    local.write_bytes(data)
    sess.data_objects.put(str(local), f"{coll}/big", num_threads=4)
    obj = sess.data_objects.get(f"{coll}/big")
    assert obj.size == len(data)
    assert obj.replicas[0].status == "1"
    assert sess.data_objects.chksum(f"{coll}/big") == sha2(data)
    assert sess.data_objects.get(f"{coll}/big").checksum == sha2(data)
    # large get (parallel too)
    sess.data_objects.get(f"{coll}/big", str(tmp_path / "big.back"), num_threads=4)
    assert (tmp_path / "big.back").read_bytes() == data


@pytest.mark.standin
def test_parallel_put_uses_replica_tokens(irods, sess, coll, tmp_path):  # noqa: F811
    data = os.urandom(33 * MiB)  # over PRC's 32 MiB single-stream limit
    (tmp_path / "big").write_bytes(data)
    sess.data_objects.put(str(tmp_path / "big"), f"{coll}/big", num_threads=3)
    assert irods.vault_path(f"{coll}/big").read_bytes() == data
    counters = irods.counters()
    assert counters["GET_FILE_DESCRIPTOR_INFO"] >= 1
    assert counters["REPLICA_CLOSE"] >= 1
    assert counters["DATA_OBJ_WRITE_BYTES"] == len(data)


def test_register_in_place(sess, coll, tmp_path):
    with server_readable_dir() as d:
        phys = d / "reg.dat"
        phys.write_bytes(b"registered bytes")
        sess.data_objects.register(str(phys), f"{coll}/reg", regChksum="")
        obj = sess.data_objects.get(f"{coll}/reg")
        assert obj.replicas[0].path == str(phys)
        assert obj.size == len(b"registered bytes")
        assert obj.checksum == sha2(b"registered bytes")
        with obj.open("r") as f:
            assert f.read() == b"registered bytes"
        for force in ({}, {"forceFlag": ""}):
            with pytest.raises(CATALOG_ALREADY_HAS_ITEM_BY_THAT_NAME):
                sess.data_objects.register(str(phys), f"{coll}/reg", **force)
        with pytest.raises(UNIX_FILE_STAT_ERR) as exc:
            sess.data_objects.register(str(d / "missing"), f"{coll}/missing")
        assert exc.value.code == -516002
        # the server's service account cannot search this directory: it cannot even stat the file
        (d / "closed").mkdir(mode=0)
        (d / "closed").chmod(0)
        with pytest.raises(UNIX_FILE_STAT_ERR) as exc:
            sess.data_objects.register(str(d / "closed" / "f"), f"{coll}/closed")
        assert exc.value.code == -516013
        # an unreadable file: registered without a checksum (a stat is enough), never with one
        unreadable = d / "unreadable"
        unreadable.write_bytes(b"secret")
        unreadable.chmod(0)
        with pytest.raises(UNIX_FILE_OPEN_ERR) as exc:
            sess.data_objects.register(str(unreadable), f"{coll}/unreadable", regChksum="")
        assert exc.value.code == -510013
        assert not sess.data_objects.exists(f"{coll}/unreadable")
        sess.data_objects.register(str(unreadable), f"{coll}/unreadable")
        assert sess.data_objects.get(f"{coll}/unreadable").size == 6
        # verifyChksum computes and stores the checksum too
        phys2 = d / "reg2.dat"
        phys2.write_bytes(b"two")
        sess.data_objects.register(str(phys2), f"{coll}/reg2", verifyChksum="")
        assert sess.data_objects.get(f"{coll}/reg2").checksum == sha2(b"two")
        # unlinking never deletes a file outside the vault; unregistering forgets the object only
        sess.data_objects.unlink(f"{coll}/reg2", force=True)
        assert phys2.exists()
        sess.data_objects.unregister(f"{coll}/reg")
        assert not sess.data_objects.exists(f"{coll}/reg") and phys.exists()
        # resources: the server has exactly one
        sess.data_objects.register(str(phys2), f"{coll}/reg3", destRescName="demoResc")
        with pytest.raises(SYS_RESC_DOES_NOT_EXIST):
            sess.data_objects.register(str(phys2), f"{coll}/reg4", destRescName="otherResc")
        with pytest.raises(SYS_RESC_DOES_NOT_EXIST):
            sess.data_objects.put(str(phys2), f"{coll}/reg4", destRescName="otherResc")
        # a whole directory
        tree = d / "tree"
        (tree / "sub").mkdir(parents=True)
        (tree / "a").write_bytes(b"a")
        (tree / "sub" / "b").write_bytes(b"bb")
        sess.collections.register(str(tree), f"{coll}/tree")
        assert sess.data_objects.get(f"{coll}/tree/sub/b").replicas[0].path == str(tree / "sub" / "b")
        sess.collections.remove(f"{coll}/tree", recurse=True, force=True)
        assert (tree / "sub" / "b").exists()


def test_chksum(sess, coll, tmp_path):
    local = tmp_path / "c"
    local.write_bytes(b"checksum me")
    sess.data_objects.put(str(local), f"{coll}/c")
    assert not sess.data_objects.get(f"{coll}/c").checksum
    with pytest.raises(Server_Checksum_Warning) as warning:  # verification without a checksum to verify
        sess.data_objects.chksum(f"{coll}/c", verifyChksum="", r_error=RErrorStack())
    assert [w["error_code"] for w in warning.value.response] == [-862000]
    assert sess.data_objects.chksum(f"{coll}/c") == sha2(b"checksum me")
    assert sess.data_objects.get(f"{coll}/c").checksum == sha2(b"checksum me")
    assert sess.data_objects.chksum(f"{coll}/c", verifyChksum="") == ""
    assert sess.data_objects.chksum(f"{coll}/c", forceChksum="") == sha2(b"checksum me")
    for flag in ("verifyChksum", "forceChksum"):  # on a put, only regChksum makes a checksum
        sess.data_objects.put(str(local), f"{coll}/{flag}", **{flag: ""})
        assert not sess.data_objects.get(f"{coll}/{flag}").checksum
    sess.data_objects.put(str(local), f"{coll}/r", regChksum="")
    assert sess.data_objects.get(f"{coll}/r").checksum == sha2(b"checksum me")


def test_chksum_verification_finds_a_changed_file(sess, coll):
    with server_readable_dir() as d:
        (d / "f").write_bytes(b"before")
        sess.data_objects.register(str(d / "f"), f"{coll}/f", regChksum="")
        (d / "f").write_bytes(b"after!")
        with pytest.raises(Server_Checksum_Warning) as warning:
            sess.data_objects.chksum(f"{coll}/f", verifyChksum="", r_error=RErrorStack())
        assert [w["error_code"] for w in warning.value.response] == [-314000]
        assert sess.data_objects.get(f"{coll}/f").checksum == sha2(b"before")  # verifying stores nothing
        assert sess.data_objects.chksum(f"{coll}/f", forceChksum="") == sha2(b"after!")


@pytest.mark.standin
def test_restart_keeps_catalog(irods, tmp_path):  # noqa: F811
    local = tmp_path / "keep"
    local.write_bytes(b"kept across restarts")
    with irods.session() as s:
        s.collections.create(f"{irods.home}/restart")
        s.data_objects.put(str(local), f"{irods.home}/restart/keep")
        s.data_objects.get(f"{irods.home}/restart/keep").metadata.add("k", "v")
    port = irods.port
    irods.restart()
    assert irods.port == port
    with irods.session() as s:
        obj = s.data_objects.get(f"{irods.home}/restart/keep")
        assert obj.metadata.get_one("k").value == "v"
        with obj.open("r") as f:
            assert f.read() == b"kept across restarts"
        s.collections.remove(f"{irods.home}/restart", recurse=True, force=True)


def test_sigterm_is_clean(irods_server_factory):  # noqa: F811
    srv = irods_server_factory()
    with srv.session() as s:
        assert s.collections.exists(srv.home)
    srv.stop()
    assert srv.last_returncode == 0
    assert "stopped" in Path(srv.log_path).read_text()


def test_reported_version_4_3(irods_server_factory, tmp_path):  # noqa: F811
    srv = irods_server_factory(version="4.3.2")
    (tmp_path / "f").write_bytes(b"four")
    with srv.session() as s:
        assert s.server_version == (4, 3, 2)
        s.data_objects.put(str(tmp_path / "f"), f"{srv.home}/f")
        obj = s.data_objects.get(f"{srv.home}/f")  # no D_ACCESS_TIME (424) below 5.0
        assert obj.size == 4
    assert srv.counters()["AUTHENTICATION"] == 2


def test_cli_with_control_socket(tmp_path):
    sock_path = tmp_path / "ctl.sock"
    cmd = [sys.executable, "-m", "tests.irods_server", "--port", "0", "--vault", str(tmp_path / "v"),
           "--catalog", str(tmp_path / "c.db"), "--user", "rods:rods", "--user", "bob:bpw",
           "--control-socket", str(sock_path)]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert "listening on 127.0.0.1:" in line and str(sock_path) in line
        port = int(line.split("127.0.0.1:")[1].split()[0])
        with socket.socket(socket.AF_UNIX) as c:
            c.connect(str(sock_path))
            c.sendall(b'{"cmd": "ping"}\n{"cmd": "fail", "api": "NO_SUCH_API"}\n')
            f = c.makefile("r")
            assert json.loads(f.readline()) == {"ok": True, "port": port}
            assert json.loads(f.readline())["ok"] is False
        with iRODSSession(host="127.0.0.1", port=port, user="bob", password="bpw", zone="tempZone") as s:
            assert s.collections.get("/tempZone/home/bob").owner_name == "bob"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    assert not sock_path.exists()


def test_object_is_intermediate_while_open_for_write(irods, sess, coll):  # noqa: F811
    with irods.session() as other:
        with sess.data_objects.open(f"{coll}/w", "w") as f:
            f.write(b"x" * 10_000)
            replica = other.data_objects.get(f"{coll}/w").replicas[0]
            assert replica.status == "2"
        obj = other.data_objects.get(f"{coll}/w")
        assert obj.replicas[0].status == "1" and obj.size == 10_000
