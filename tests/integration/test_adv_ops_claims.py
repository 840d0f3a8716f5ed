"""Session 4 probes, configuration and operations: the records by which daemons with different configs
keep their zones apart (daemonclaims.py), in the cases around the plain overlap of test_adv_ops.py:

- a daemon killed with SIGKILL: its record keeps no overlapping daemon waiting;
- a zone directory appearing after start as a link into another daemon's zone: not walked;
- Redis lost its data: the records are written again, an overlapping daemon still refused;
- another host's daemon: its landing path is no overlap, its collection is.
"""

from __future__ import annotations

import signal
import time

import pytest

from tests.daemon_harness import wait_for
from tests.integration.test_adv_ops import Proc, pipe, write_files


def test_an_overlapping_daemon_starts_once_the_other_was_killed(request, tmp_path, redis_server, redis_conn, irods):
    """The record of a daemon killed with SIGKILL stays in Redis; a daemon of this host whose zone overlaps it
    is not kept waiting by it (its pid is gone), and ingests what arrives."""
    uniq = tmp_path.name[-14:]
    a = pipe(request, tmp_path / f"{uniq}-a", redis_server.url, irods, name="a")
    assert a.root is not None
    b = pipe(request, tmp_path / f"{uniq}-b", redis_server.url, irods, name="b", path=str(a.root))
    first = Proc(a.config_path, tmp_path / "first.log", "run")
    second: Proc | None = None
    try:
        assert wait_for(lambda: "running with 1 zones" in first.text(), timeout=15), first.text()
        first.stop(signal.SIGKILL)
        second = Proc(b.config_path, tmp_path / "second.log", "run")
        assert wait_for(lambda: "running with 1 zones" in second.text() or second.p.poll() is not None,
                        timeout=15), second.text()
        assert second.p.poll() is None, second.text()
        write_files(a.root, ["x.dat"])
        assert wait_for(lambda: b.ledger.stats("b")["queued"] == 1, timeout=20), b.ledger.stats("b")
        b.work()
    finally:
        if second is not None:
            assert second.stop() == 0
    assert sorted(b.objects()) == [f"{b.collection}/x.dat"]
    assert a.objects() == {}

def test_a_zone_directory_appearing_later_as_a_link_into_another_daemons_zone(request, tmp_path, redis_server,
                                                                               redis_conn, irods):
    """Daemon b's zone directory does not exist when it starts (so nothing overlaps yet); then it appears as a
    symlink to daemon a's landing directory: b must not walk it, and each file goes in once, through a."""
    uniq = tmp_path.name[-14:]
    a = pipe(request, tmp_path / f"{uniq}-a", redis_server.url, irods, name="a")
    assert a.root is not None
    later = tmp_path / "later"
    later.mkdir()
    b = pipe(request, tmp_path / f"{uniq}-b", redis_server.url, irods, name="b", path=str(later))
    later.rmdir()
    da = Proc(a.config_path, tmp_path / "a.log", "run")
    db = Proc(b.config_path, tmp_path / "b.log", "run")
    try:
        assert wait_for(lambda: "running with 1 zones" in da.text() and "running with 1 zones" in db.text(),
                        timeout=15), da.text() + db.text()
        later.symlink_to(a.root)
        write_files(a.root, ["x.dat", "sub/y.dat"])
        assert wait_for(lambda: a.ledger.stats("a")["queued"] == 2, timeout=20), a.ledger.stats("a")
        time.sleep(7)  # a lost zone is looked at every 5 s
        assert a.ledger.stats("b")["queued"] + a.ledger.stats("b")["done"] == 0, db.text()
        assert "zone 'b' and zone 'a'" in db.text(), db.text()
        a.work()
    finally:
        da.stop()
        db.stop()
    assert b.objects() == {}
    assert sorted(a.objects()) == [f"{a.collection}/sub/y.dat", f"{a.collection}/x.dat"]

def test_after_redis_lost_its_data_an_overlapping_daemon_is_still_refused(request, tmp_path, redis_server,
                                                                          redis_conn, irods):
    """A Redis restarted empty loses the records too: the running daemon writes them again with its next
    renewal (every second), so a daemon started after that on an overlapping zone is still refused."""
    uniq = tmp_path.name[-14:]
    a = pipe(request, tmp_path / f"{uniq}-a", redis_server.url, irods, name="a")
    assert a.root is not None
    (a.root / "sub").mkdir()
    b = pipe(request, tmp_path / f"{uniq}-b", redis_server.url, irods, name="b", path=str(a.root / "sub"))
    first = Proc(a.config_path, tmp_path / "first.log", "run")
    second: Proc | None = None
    try:
        assert wait_for(lambda: "running with 1 zones" in first.text(), timeout=15), first.text()
        redis_conn.flushall()
        assert wait_for(lambda: redis_conn.hlen("ingestd:claims") == 1, timeout=10)
        assert redis_conn.exists("ingestd:owner:a")  # written with the record, never after it
        second = Proc(b.config_path, tmp_path / "second.log", "run")
        assert wait_for(lambda: second.p.poll() is not None, timeout=15), "the overlapping daemon runs"
        assert second.p.returncode == 1 and "their paths overlap" in second.text(), second.text()
        assert first.p.poll() is None
    finally:
        if second is not None:
            second.stop()
        assert first.stop() == 0, first.text()

def test_a_daemon_on_another_host_its_collection_counts_its_path_does_not(request, tmp_path, redis_server,
                                                                          redis_conn, irods):
    """Another host's daemon (its records written here by hand): the same landing path there is another disk
    as far as this host can tell, so it is no overlap; the same collection is one in iRODS, so it is."""
    import json as _json

    from irods_ingestd.config_paths import place
    from irods_ingestd.daemonclaims import Claim

    p = pipe(request, tmp_path, redis_server.url, irods)
    assert p.root is not None
    token = "t-other"
    holder = {"host": "otherhost", "pid": 4242, "pidns": "pid:[1]", "since": time.time(), "token": token}
    redis_conn.set("ingestd:owner:far", _json.dumps(holder), px=60_000)

    def far(collection: str) -> None:
        redis_conn.hset("ingestd:claims", "far", Claim("far", token, "otherhost", collection, place(p.root)).to_json())

    far(p.collection + "-elsewhere")  # same path, another collection: runs
    d = Proc(p.config_path, tmp_path / "d1.log", "run")
    try:
        assert wait_for(lambda: "running with 1 zones" in d.text() or d.p.poll() is not None, timeout=15), d.text()
        assert d.p.poll() is None, d.text()
    finally:
        assert d.stop() == 0
    far(p.collection + "/below")  # a collection inside this zone's: refused, naming the other host
    d = Proc(p.config_path, tmp_path / "d2.log", "run")
    try:
        assert wait_for(lambda: d.p.poll() is not None, timeout=15), "runs beside another host's daemon"
        assert d.p.returncode == 1, d.text()
        assert "zone 'z' and zone 'far' of the daemon on host otherhost (pid 4242" in d.text(), d.text()
        assert "their collections overlap" in d.text()
    finally:
        d.stop()


# a probe of the product on the real server, not of the stand-in's likeness: not run again in the second pass
pytestmark = pytest.mark.realonly
