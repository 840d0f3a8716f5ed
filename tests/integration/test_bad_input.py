"""The bad-input catalogue: each case leaves the daemon running and the other files ingested, and is
itself either ingested correctly or reported clearly once (not in a loop).

Each test runs the whole pipeline (daemon, a real RQ worker, Redis, the iRODS test server) with a
rescan every second, so a case reported in a loop would show up as repeated records.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from irods_ingestd import names
from irods_ingestd.daemon import Daemon
from irods_ingestd.messages import MessageId
from tests.daemon_harness import DaemonThread, make_config, queued
from tests.expect import sha2
from tests.pipeline_harness import Pipeline
from tests.privileges import can_switch, fs_user


def records(caplog: pytest.LogCaptureFixture, message_id: str, needle: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "message_id", None) == message_id and needle in r.getMessage()]


@pytest.fixture
def pipe(tmp_path, redis_server, redis_conn, irods):  # type: ignore[no-untyped-def]
    p = Pipeline(tmp_path, redis_server.url, irods)
    yield p
    p.__exit__(None, None, None)
    p.cleanup()


def expected_path(p: Pipeline, rel: str) -> str:
    return names.target_for(p.collection, rel).path


def test_odd_names_are_ingested_or_reported_once(pipe: Pipeline, caplog):
    caplog.set_level(logging.INFO)
    odd = ["with space.txt", "quote'single.txt", 'quote"double.txt', "back`tick.txt", "new\nline.txt",
           "per%cent%41.txt", "-leading-dash.txt", "--", "amp&<lt>.txt", "ünïcødé.txt", "x" * 255,
           os.fsdecode(b"caf\xe9-latin1.txt"), "sub dir/with 'quotes'/inner file"]
    deep = "/".join(["d" * 200] * 19) + "/deep.txt"  # ~3,830 bytes: longer than any iRODS path may be
    contents = {}
    with pipe:
        for rel in odd + [deep]:
            path = pipe.root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            data = f"content of {rel!r}".encode("utf-8", "surrogateescape")
            path.write_bytes(data)
            contents[rel] = data
        pipe.drain(min_done=len(odd))
        time.sleep(2.5)  # a few rescans: nothing may be reported again
        pipe.drain()
    objs = pipe.objects()
    for rel in odd:
        target = expected_path(pipe, rel)
        assert target in objs, (rel, target)
    s = pipe.irods.session()
    try:
        for rel in odd:
            obj = s.data_objects.get(expected_path(pipe, rel))
            assert obj.checksum == sha2(contents[rel]), rel
            avus = {m.name: m.value for m in obj.metadata.items()}
            if names.target_for(pipe.collection, rel).mapped:
                assert names.rel_from_original_name(avus["ingestd::original_name"]).endswith(rel.rsplit("/")[-1])
    finally:
        s.cleanup()
    failures = dict(pipe.ledger.failures("z"))
    assert list(failures) == [deep]
    assert "too long" in failures[deep]["reason"]
    assert len(records(caplog, MessageId.FILE_FAILED, "deep.txt")) == 1
    assert len(objs) == len(odd)


def test_empty_and_sparse_files(pipe: Pipeline):
    with pipe:
        (pipe.root / "empty").write_bytes(b"")
        with open(pipe.root / "sparse", "wb") as f:
            f.seek(20 << 20)
            f.write(b"end")
        pipe.drain(min_done=2)
    s = pipe.irods.session()
    try:
        e = s.data_objects.get(expected_path(pipe, "empty"))
        assert e.size == 0 and e.checksum == sha2(b"")
        sp = s.data_objects.get(expected_path(pipe, "sparse"))
        assert sp.size == (20 << 20) + 3
        assert sp.checksum == sha2(b"\0" * (20 << 20) + b"end")
    finally:
        s.cleanup()


def test_files_changed_between_settle_and_ingest(pipe: Pipeline, caplog):
    caplog.set_level(logging.INFO)
    with pipe:
        for n in ("vanish", "shrink", "grow", "replace", "steady"):
            (pipe.root / n).write_bytes(n.encode() * 100)
        # let the daemon queue them, but run no worker yet
        deadline = time.monotonic() + 10
        while pipe.ledger.stats("z")["queued"] < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pipe.ledger.stats("z")["queued"] == 5
        (pipe.root / "vanish").unlink()
        with open(pipe.root / "shrink", "r+b") as f:
            f.truncate(10)
        with open(pipe.root / "grow", "ab") as f:
            f.write(b"more")
        tmp = pipe.root / ".replace.new"
        tmp.write_bytes(b"a different file")
        os.rename(tmp, pipe.root / "replace")
        pipe.drain(min_done=4)
        time.sleep(2.5)
        pipe.drain()
    s = pipe.irods.session()
    try:
        for n in ("shrink", "grow", "replace", "steady"):
            obj = s.data_objects.get(expected_path(pipe, n))
            assert obj.checksum == sha2((pipe.root / n).read_bytes()), n  # the final state, not the old one
        assert not s.data_objects.exists(expected_path(pipe, "vanish"))
    finally:
        s.cleanup()
    assert dict(pipe.ledger.failures("z")) == {}
    assert len(pipe.objects()) == 4


def test_hard_links_are_ingested_under_each_name(pipe: Pipeline):
    with pipe:
        (pipe.root / "original").write_bytes(b"linked content")
        os.link(pipe.root / "original", pipe.root / "hardlink")
        pipe.drain(min_done=2)
    objs = pipe.objects()
    assert {expected_path(pipe, "original"), expected_path(pipe, "hardlink")} == set(objs)


def _symlinks(root: Path, outside: Path) -> None:
    (root / "real.txt").write_bytes(b"real")
    (root / "adir").mkdir()
    (root / "adir" / "in-dir.txt").write_bytes(b"in dir")
    outside.write_bytes(b"secret outside the zone")
    os.symlink(root / "real.txt", root / "to-file")
    os.symlink(root / "adir", root / "to-dir")
    os.symlink(root / "nowhere", root / "dangling")
    os.symlink(root / "loop-b", root / "loop-a")
    os.symlink(root / "loop-a", root / "loop-b")
    os.symlink(outside, root / "to-outside")


def test_symlinks_not_followed_by_default(pipe: Pipeline, caplog, tmp_path):
    caplog.set_level(logging.INFO)
    with pipe:
        _symlinks(pipe.root, tmp_path / "outside.txt")
        pipe.drain(min_done=2)
        time.sleep(2.5)
        pipe.drain()
    assert set(pipe.objects()) == {expected_path(pipe, "real.txt"), expected_path(pipe, "adir/in-dir.txt")}
    for link in ("to-file", "to-dir", "dangling", "loop-a", "loop-b", "to-outside"):
        assert len(records(caplog, MessageId.FILE_SKIPPED, f"skipping {link}: symlink")) == 1, link


def test_symlinks_followed_only_to_files_inside_the_zone(tmp_path, redis_server, redis_conn, irods, caplog):
    caplog.set_level(logging.INFO)
    with Pipeline(tmp_path, redis_server.url, irods, zone={"symlinks": "follow"}) as p:
        _symlinks(p.root, tmp_path / "outside.txt")
        p.drain(min_done=3)
        time.sleep(2.5)
        p.drain()
    assert set(p.objects()) == {expected_path(p, r) for r in ("real.txt", "adir/in-dir.txt", "to-file")}
    assert len(records(caplog, MessageId.FILE_SKIPPED, "to-outside: symlink pointing outside")) == 1
    assert len(records(caplog, MessageId.FILE_SKIPPED, "dangling: dangling")) == 1
    assert len(records(caplog, MessageId.FILE_SKIPPED, "loop-a: dangling or looping")) == 1
    assert len(records(caplog, MessageId.FILE_SKIPPED, "to-dir: symlink to a directory")) == 1


def test_fifos_sockets_and_devices_are_never_opened(pipe: Pipeline, caplog):
    caplog.set_level(logging.INFO)
    sock = socket.socket(socket.AF_UNIX)
    with pipe:
        os.mkfifo(pipe.root / "a.fifo")
        sock.bind(str(pipe.root / "a.sock"))
        try:
            os.mknod(pipe.root / "a.dev", 0o600 | stat.S_IFCHR, os.makedev(1, 3))  # like /dev/null
            have_dev = True
        except PermissionError:
            have_dev = False
        (pipe.root / "regular").write_bytes(b"r")
        pipe.drain(min_done=1)
        time.sleep(2.5)
        pipe.drain()
    sock.close()
    assert set(pipe.objects()) == {expected_path(pipe, "regular")}
    assert len(records(caplog, MessageId.FILE_SKIPPED, "a.fifo: fifo")) == 1
    assert len(records(caplog, MessageId.FILE_SKIPPED, "a.sock: socket")) == 1
    if have_dev:
        assert len(records(caplog, MessageId.FILE_SKIPPED, "a.dev: device")) == 1


@pytest.fixture
def open_dir():  # type: ignore[no-untyped-def]
    """A directory the service user (nobody) can traverse, unlike pytest's private tmp_path."""
    d = Path(tempfile.mkdtemp(prefix="ingestd-zone-"))
    d.chmod(0o755)
    yield d
    subprocess.run(["chmod", "-R", "u+rwx", str(d)], check=False)
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.skipif(not can_switch(), reason="needs root to take the file-system rights of another user")
def test_directory_without_permission_is_reported_once(tmp_path, redis_server, redis_conn, irods, open_dir,
                                                        caplog):
    """The daemon runs with the service user's rights (nobody); a directory it cannot read is reported
    once and the rest of the zone is ingested."""
    caplog.set_level(logging.INFO)
    root = open_dir / "landing"
    root.mkdir(mode=0o755)
    p = Pipeline(tmp_path, redis_server.url, irods, root=root)
    locked = root / "locked"
    locked.mkdir()
    (locked / "inside").write_bytes(b"x")
    locked.chmod(0o700)  # root's, not readable by nobody
    (root / "ok").write_bytes(b"ok")
    (root / "ok").chmod(0o644)
    d = Daemon(p.cfg, r=p.r)
    p.r.ping()  # the Redis connection is opened as root (its socket is root's); the files are read as nobody
    with fs_user():
        d.start()
        deadline = time.monotonic() + 4.0  # several rescans (every second)
        while time.monotonic() < deadline:
            d.turn(max_wait=0.05)
    d.close()
    p.drain(min_done=1)
    assert set(p.objects()) == {expected_path(p, "ok")}
    assert len(records(caplog, MessageId.FILE_SKIPPED, "skipping locked: cannot read directory")) == 1


@pytest.mark.skipif(not can_switch(), reason="needs root to take the file-system rights of another user")
def test_unreadable_landing_file_fails_once_and_retry_ingests_it(tmp_path, redis_server, redis_conn, irods,
                                                                 open_dir, caplog):
    """A file the worker (running as nobody) cannot read fails once with the reason, others go in;
    `retry` after fixing the permissions ingests it."""
    caplog.set_level(logging.INFO)
    root = open_dir / "landing"
    root.mkdir(mode=0o755)
    p = Pipeline(tmp_path, redis_server.url, irods, root=root)
    p.user_context = fs_user
    with p:
        (root / "locked.txt").write_bytes(b"secret")
        (root / "locked.txt").chmod(0o600)
        (root / "fine.txt").write_bytes(b"fine")
        (root / "fine.txt").chmod(0o644)
        deadline = time.monotonic() + 10
        while p.ledger.stats("z")["queued"] < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert p.work_direct() >= 1
        time.sleep(2.5)  # rescans: the failed file is not queued again
        assert p.work_direct() == 0
        failures = dict(p.ledger.failures("z"))
        assert list(failures) == ["locked.txt"]
        assert "Permission denied" in failures["locked.txt"]["reason"]
        assert len(records(caplog, MessageId.FILE_FAILED, "locked.txt")) == 1
        (root / "locked.txt").chmod(0o644)
        r = subprocess.run([sys.executable, "-m", "irods_ingestd", "-c", str(p.config_path), "retry"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert "1 failed files queued again" in r.stdout
        deadline = time.monotonic() + 10
        while p.ledger.stats("z")["queued"] < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert p.work_direct() == 1
    assert set(p.objects()) == {expected_path(p, "fine.txt"), expected_path(p, "locked.txt")}
    assert dict(p.ledger.failures("z")) == {}


def test_100k_files_in_one_directory_are_queued_once(tmp_path, redis_server, redis_conn):
    n = 100_000
    zone = tmp_path / "flat"
    zone.mkdir()
    old = time.time() - 600
    for i in range(n):
        f = zone / f"f{i:06}"
        f.write_bytes(b"")
        os.utime(f, (old, old))
    cfg = make_config(tmp_path, redis_server.url, [{"name": "z", "path": str(zone), "settle": "1s",
                                                    "collection": "/tempZone/home/rods/flat", "rescan": "2s"}],
                      queue={"max_backlog": 10 * n})
    with DaemonThread(cfg, redis_conn) as dt:
        deadline = time.monotonic() + 120
        while ("z" not in dt.daemon.zones or dt.daemon.zones["z"].walks_done < 2) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert dt.daemon.zones["z"].walks_done >= 2
    got = queued(redis_conn, "ingest-test")
    assert len(got) == n and len({rel for _, rel, _, _ in got}) == n


def test_many_files_in_one_directory(tmp_path, redis_server, redis_conn, irods):
    """2,000 files in one directory through the whole pipeline."""
    n = 2_000
    with Pipeline(tmp_path, redis_server.url, irods, zone={"settle": "0.1s"}) as p:
        d = p.root / "flat"
        d.mkdir()
        old = time.time() - 600
        for i in range(n):
            f = d / f"f{i:06}"
            f.write_bytes(b"")
            os.utime(f, (old, old))
        p.drain(timeout=240, min_done=n)
    assert p.ledger.stats("z")["done"] == n
    assert len(p.objects()) == n


def test_zone_directory_deleted_and_recreated(pipe: Pipeline, caplog):
    caplog.set_level(logging.INFO)
    with pipe:
        (pipe.root / "first").write_bytes(b"1")
        pipe.drain(min_done=1)
        for f in pipe.root.iterdir():
            f.unlink()
        pipe.root.rmdir()
        time.sleep(1.5)
        assert pipe.daemon is not None and pipe.daemon.daemon.zones["z"].state == "lost"
        pipe.root.mkdir()
        (pipe.root / "second").write_bytes(b"2")
        pipe.drain(timeout=30, min_done=2)
        assert pipe.daemon.daemon.zones["z"].state == "watching"
        (pipe.root / "third").write_bytes(b"3")  # seen through events again
        pipe.drain(timeout=30, min_done=3)
    assert {expected_path(pipe, n) for n in ("first", "second", "third")} == set(pipe.objects())
    assert len([r for r in caplog.records if getattr(r, "message_id", None) == MessageId.ZONE_WALKING]) == 1
