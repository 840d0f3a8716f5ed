"""The daemon against a real Redis: every complete file queued once, never a file still being written."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import redis

from irods_ingestd.ledger import Ledger
from tests.daemon_harness import DaemonThread, make_config, queued, wait_for


@pytest.fixture
def zone_dir(tmp_path: Path) -> Path:
    d = tmp_path / "landing"
    d.mkdir()
    return d


def cfg_for(tmp_path: Path, redis_server, zone_dir: Path, **zone):  # type: ignore[no-untyped-def]
    z = {"name": "z1", "path": str(zone_dir), "collection": "/tempZone/home/rods/z1", "settle": "1s",
         "rescan": "1h"}
    z.update(zone)
    return make_config(tmp_path, redis_server.url, [z])


def rels(r: redis.Redis) -> list[str]:
    return sorted(x[1] for x in queued(r))


def test_slow_writer_is_queued_once_after_it_stops(tmp_path, redis_server, redis_conn, zone_dir):
    cfg = cfg_for(tmp_path, redis_server, zone_dir)
    with DaemonThread(cfg, redis_conn):
        time.sleep(0.3)
        with open(zone_dir / "slow.dat", "wb") as f:
            for _ in range(20):
                f.write(b"x" * 1000)
                f.flush()
                time.sleep(0.15)  # 3 s of writing, settle time 1 s
                assert rels(redis_conn) == [], "queued while still being written"
        closed = time.monotonic()
        wait_for(lambda: rels(redis_conn), timeout=10)
        waited = time.monotonic() - closed
        time.sleep(1.5)
    q = queued(redis_conn)
    assert [(x[1], x[2]) for x in q] == [("slow.dat", 20_000)]
    assert waited >= 0.9, f"queued {waited:.2f}s after the last write, before the settle time"


def test_temp_name_then_rename_is_queued_once_under_final_name(tmp_path, redis_server, redis_conn, zone_dir):
    cfg = cfg_for(tmp_path, redis_server, zone_dir)
    with DaemonThread(cfg, redis_conn):
        time.sleep(0.3)
        for i in range(5):
            tmp = zone_dir / f".data{i}.bin.AbC12x"  # rsync's temporary name
            tmp.write_bytes(os.urandom(1000))
            os.rename(tmp, zone_dir / f"data{i}.bin")
        wait_for(lambda: len(rels(redis_conn)) >= 5, timeout=10)
        time.sleep(1.5)
    assert rels(redis_conn) == [f"data{i}.bin" for i in range(5)]


def test_files_present_before_start_and_written_while_stopped(tmp_path, redis_server, redis_conn, zone_dir):
    (zone_dir / "before.txt").write_text("before")
    old = time.time() - 3600
    os.utime(zone_dir / "before.txt", (old, old))
    (zone_dir / "fresh.txt").write_text("fresh")  # recent mtime: must still settle
    cfg = cfg_for(tmp_path, redis_server, zone_dir)
    with DaemonThread(cfg, redis_conn):
        wait_for(lambda: len(rels(redis_conn)) >= 2, timeout=10)
    assert rels(redis_conn) == ["before.txt", "fresh.txt"]
    (zone_dir / "while-stopped.txt").write_text("x")
    with DaemonThread(cfg, redis_conn):
        wait_for(lambda: len(rels(redis_conn)) >= 3, timeout=10)
        time.sleep(1.2)
    assert rels(redis_conn) == ["before.txt", "fresh.txt", "while-stopped.txt"]


def test_new_directory_tree_after_start(tmp_path, redis_server, redis_conn, zone_dir):
    cfg = cfg_for(tmp_path, redis_server, zone_dir)
    with DaemonThread(cfg, redis_conn):
        time.sleep(0.3)
        deep = zone_dir / "a" / "b" / "c" / "d" / "e"
        deep.mkdir(parents=True)
        expected = []
        p = zone_dir
        for part in ["a", "b", "c", "d", "e"]:
            p = p / part
            for i in range(3):
                (p / f"f{i}").write_bytes(b"1")
                expected.append(str((p / f"f{i}").relative_to(zone_dir)))
        wait_for(lambda: len(rels(redis_conn)) >= len(expected), timeout=15)
        time.sleep(1.2)
    assert rels(redis_conn) == sorted(expected)


def test_lost_events_are_repaired_by_the_next_walk(tmp_path, redis_server, redis_conn, zone_dir):
    cfg = cfg_for(tmp_path, redis_server, zone_dir, rescan="2s")
    with DaemonThread(cfg, redis_conn) as dt:
        time.sleep(0.3)
        inotify = dt.daemon.watchers.running.get("inotify")
        assert inotify is not None
        inotify.inbox.drain(10**9)
        # simulate the kernel dropping everything: stop translating events, then write files
        del dt.daemon.watchers.running["inotify"]
        for i in range(10):
            (zone_dir / f"missed{i}").write_bytes(b"m")
        time.sleep(0.5)
        inotify.inbox.drain(10**9)
        dt.daemon.watchers.running["inotify"] = inotify
        assert rels(redis_conn) == []
        wait_for(lambda: len(rels(redis_conn)) >= 10, timeout=10)
    assert rels(redis_conn) == sorted(f"missed{i}" for i in range(10))


def test_overflow_event_triggers_a_walk(tmp_path, redis_server, redis_conn, zone_dir):
    from irods_ingestd.watch.api import Change, Kind

    cfg = cfg_for(tmp_path, redis_server, zone_dir)  # rescan 1 h: only the overflow can find them
    with DaemonThread(cfg, redis_conn) as dt:
        time.sleep(0.3)
        inotify = dt.daemon.watchers.running.get("inotify")
        assert inotify is not None
        del dt.daemon.watchers.running["inotify"]
        for i in range(10):
            (zone_dir / f"missed{i}").write_bytes(b"m")
        time.sleep(0.3)
        inotify.inbox.drain(10**9)
        inotify.inbox.put_many([Change(Kind.OVERFLOW, None, detail="test")])
        dt.daemon.watchers.running["inotify"] = inotify
        wait_for(lambda: len(rels(redis_conn)) >= 10, timeout=10)
        assert dt.daemon.counters.overflows == 1
    assert rels(redis_conn) == sorted(f"missed{i}" for i in range(10))


def test_second_walk_of_unchanged_tree_queues_nothing(tmp_path, redis_server, redis_conn, zone_dir):
    old = time.time() - 3600
    for d in range(100):
        sub = zone_dir / f"d{d:03}"
        sub.mkdir()
        for i in range(100):
            p = sub / f"f{i:03}"
            p.write_bytes(b"")
            os.utime(p, (old, old))
    cfg = cfg_for(tmp_path, redis_server, zone_dir, watcher="poll", poll_interval="0.5s")
    ledger = Ledger(redis_conn)
    with DaemonThread(cfg, redis_conn) as dt:
        wait_for(lambda: len(queued(redis_conn)) >= 10_000, timeout=30)
        first = queued(redis_conn)
        # pretend the workers ingested everything
        for _, rel, size, mtime in first:
            ledger.mark_done("z1", rel, size, mtime, b"\0" * 32)
        walks = dt.daemon.zones["z1"].walks_done
        wait_for(lambda: dt.daemon.zones["z1"].walks_done >= walks + 2, timeout=30)
        assert dt.daemon.zones["z1"].walks_done >= walks + 2
        assert dt.daemon.counters.sent == 10_000
    assert len(first) == 10_000
    assert len({x[1] for x in first}) == 10_000


def test_fifo_unreadable_and_non_utf8_names(tmp_path, redis_server, redis_conn, zone_dir, caplog):
    os.mkfifo(zone_dir / "a.fifo")
    bad = os.fsdecode(b"caf\xe9.txt")
    (zone_dir / bad).write_bytes(b"latin-1 name")
    locked = zone_dir / "locked"
    locked.mkdir()
    (locked / "inside").write_bytes(b"x")
    locked.chmod(0)
    (zone_dir / "ok.txt").write_bytes(b"ok")
    cfg = cfg_for(tmp_path, redis_server, zone_dir)
    try:
        with DaemonThread(cfg, redis_conn) as dt:
            wait_for(lambda: len(rels(redis_conn)) >= 2, timeout=10)
            time.sleep(1.5)
            skipped = dt.daemon._reported
    finally:
        locked.chmod(0o755)
    got = rels(redis_conn)
    if os.geteuid() == 0:  # root reads the locked directory anyway
        assert got == sorted([bad, "locked/inside", "ok.txt"])
    else:
        assert got == sorted([bad, "ok.txt"])
        assert ("z1", "locked") in skipped
    assert skipped[("z1", "a.fifo")].startswith("fifo")
    assert "a.fifo" in caplog.text


def test_redis_down_then_back_without_its_data(tmp_path, redis_server, redis_conn, zone_dir, caplog):
    """Redis goes away (and comes back empty): files keep settling, the outage is logged once, and
    everything not in iRODS is queued again when Redis answers."""
    cfg = cfg_for(tmp_path, redis_server, zone_dir)
    (zone_dir / "early").write_bytes(b"e")
    with DaemonThread(cfg, redis_conn) as dt:
        wait_for(lambda: rels(redis_conn) == ["early"], timeout=10)
        redis_server.stop(kill=True)
        for i in range(5):
            (zone_dir / f"during{i}").write_bytes(b"d")
        # the client retries with backoff for a few seconds before it gives up
        assert wait_for(lambda: dt.daemon.status()["redis_down"], timeout=20)
        time.sleep(3)  # a few failed reconnection attempts: logged once
        redis_server.start()  # no persistence: the queue and the ledger are gone
        r2 = redis_server.client()
        assert wait_for(lambda: len(rels(r2)) == 6, timeout=20), rels(r2)
    assert rels(r2) == ["during0", "during1", "during2", "during3", "during4", "early"]
    assert caplog.text.count("Redis is not answering") == 1
    assert "Redis lost its data" in caplog.text


def test_watch_limit_falls_back_to_walking(tmp_path, redis_server, redis_conn, zone_dir, caplog):
    """When the kernel refuses more watches (ENOSPC, fs.inotify.max_user_watches), the zone is walked on
    its poll interval instead, and files in unwatched directories are still queued."""
    import errno

    for i in range(5):
        (zone_dir / f"d{i}").mkdir()
    cfg = cfg_for(tmp_path, redis_server, zone_dir, poll_interval="1s")
    with DaemonThread(cfg, redis_conn) as dt:
        wait_for(lambda: "inotify" in dt.daemon.watchers.running and "z1" in dt.daemon.zones, timeout=5)
        ino = dt.daemon.watchers.running["inotify"]._ino  # type: ignore[attr-defined]
        real_add = ino.add_watch

        def limited(path, mask):  # type: ignore[no-untyped-def]
            if os.path.basename(path).startswith("new"):
                raise OSError(errno.ENOSPC, "No space left on device")
            return real_add(path, mask)

        ino.add_watch = limited
        time.sleep(0.3)
        (zone_dir / "new1").mkdir()
        (zone_dir / "new1" / "inside").write_bytes(b"x")
        time.sleep(1.5)
        (zone_dir / "new1" / "later").write_bytes(b"y")  # no watch on new1: only a walk finds it
        assert wait_for(lambda: len(rels(redis_conn)) >= 2, timeout=10)
        assert dt.daemon.zones["z1"].state == "walking"
        ino.add_watch = real_add  # the administrator raised the limit
        assert wait_for(lambda: dt.daemon.zones["z1"].state == "watching", timeout=10)
        (zone_dir / "new1" / "watched").write_bytes(b"z")
        assert wait_for(lambda: len(rels(redis_conn)) >= 3, timeout=10)
    assert rels(redis_conn) == ["new1/inside", "new1/later", "new1/watched"]
    assert "inotify watch limit reached" in caplog.text


def test_a_daemon_started_while_redis_is_down_takes_its_zones_when_it_answers(tmp_path, redis_server, redis_conn,
                                                                               zone_dir, caplog):
    """Nothing is walked or queued before the zones are this daemon's; once Redis answers they are taken
    and the files queued."""
    cfg = cfg_for(tmp_path, redis_server, zone_dir)
    (zone_dir / "early").write_bytes(b"e")
    redis_server.stop(kill=True)
    try:
        with DaemonThread(cfg, redis_server.client()) as dt:
            assert wait_for(lambda: dt.daemon.health.down_since is not None, timeout=10)
            time.sleep(1.0)
            assert not dt.daemon._owned and dt.daemon.counters.sent == 0
            redis_server.start()
            r2 = redis_server.client()
            assert wait_for(lambda: rels(r2) == ["early"], timeout=20), caplog.text[-2000:]
            owner = json.loads(r2.get("ingestd:owner:z1"))
            assert owner["pid"] == os.getpid()
        assert r2.get("ingestd:owner:z1") is None  # let go at stop
    finally:
        if redis_server.proc is None or redis_server.proc.poll() is not None:
            redis_server.start()


def test_a_zone_appearing_later_as_a_symlink_into_another_zone_is_not_walked(tmp_path, redis_server, redis_conn,
                                                                              zone_dir, caplog):
    """Checked at load, but a missing zone directory is waited for: when it appears, it is checked again."""
    from irods_ingestd.config import validate

    (zone_dir / "sub").mkdir()
    (zone_dir / "sub" / "once.txt").write_text("x")
    env = tmp_path / "env.json"
    env.write_text("{}")
    cfg = validate({"redis": {"url": redis_server.url}, "irods": {"environment_file": str(env)},
                    "queue": {"name": "ingest-test"},
                    "zone": [{"name": "z1", "path": str(zone_dir), "collection": "/tempZone/home/rods/z1",
                              "settle": "0.3s"},
                             {"name": "z2", "path": str(tmp_path / "later"), "collection": "/tempZone/home/rods/z2",
                              "settle": "0.3s"}]}, check_paths=False)
    with DaemonThread(cfg, redis_conn) as dt:
        assert wait_for(lambda: rels(redis_conn) == ["sub/once.txt"], timeout=10)
        assert dt.daemon.zones["z2"].state == "lost"
        (tmp_path / "later").symlink_to(zone_dir / "sub")
        assert wait_for(lambda: "zone z2 is not walked" in caplog.text, timeout=15)
        time.sleep(1.0)
        assert dt.daemon.zones["z2"].state == "lost"
    assert queued(redis_conn) == [("z1", "sub/once.txt", 1, (zone_dir / "sub" / "once.txt").stat().st_mtime_ns)]
    assert "their paths overlap" in caplog.text
