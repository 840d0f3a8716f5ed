"""Issue 11, daemon cases through the real pipeline (real Redis, real RQ workers, real iRODS):

- 7: two daemons on one config (one refuses, naming the other), racing enqueuers (nothing queued twice),
  a `queued` counter that drifted (recounted at start), status keyed by host and pid;
- 8: a file whose RQ job was lost (`rq empty`, eviction) is queued again by the next walk;
- 2: a file that grows again after it was queued is queued again as a new version within about `settle`.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from rq import Queue

from irods_ingestd.config import QueueConfig
from irods_ingestd.job import Batch, FileItem, ZoneSpec
from irods_ingestd.ledger import QUEUED, Ledger
from irods_ingestd.queue import Enqueuer
from tests.daemon_harness import wait_for
from tests.pipeline_harness import Pipeline

ROOT = Path(__file__).resolve().parents[2]
QUEUE = "pipeline-test"


def pipeline(request: pytest.FixtureRequest, tmp: Path, redis_url: str, irods: Any, **kw: Any) -> Pipeline:
    """A Pipeline whose collection is empty at start (the real server keeps objects between runs) and
    removed at the end."""
    p = Pipeline(tmp, redis_url, irods, **kw)
    p.cleanup()
    request.addfinalizer(p.cleanup)
    return p


def jobs_files(r: redis.Redis, queue: str = QUEUE) -> list[tuple[str, int, int]]:
    """(rel, size, mtime_ns) of every file of every job waiting in the queue."""
    out = []
    for job in Queue(queue, connection=r).get_jobs():
        out += [(f.rel, f.size, f.mtime_ns) for f in Batch.from_record(job.args[0]).files]
    return out


def write_files(root: Path, n: int, prefix: str = "f") -> list[str]:
    rels = []
    for i in range(n):
        rel = f"d{i % 4}/{prefix}{i:03d}.dat"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(os.urandom(100 + i))
        rels.append(rel)
    return rels


class Proc:
    """`irods-ingestd ...` as a child process, its stderr in a file."""

    def __init__(self, cfg: Path, log: Path, *args: str) -> None:
        self.log = log
        self._f = open(log, "w")
        self.p = subprocess.Popen([sys.executable, "-m", "irods_ingestd", "--log-target", "stderr", "-c", str(cfg),
                                   *args], stderr=self._f, stdout=subprocess.DEVNULL, cwd=ROOT)

    def text(self) -> str:
        return self.log.read_text()

    def stop(self) -> int | None:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(15)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(5)
        self._f.close()
        return self.p.returncode


def cli_json(cfg: Path, *args: str) -> Any:
    r = subprocess.run([sys.executable, "-m", "irods_ingestd", "--log-target", "stderr", "-c", str(cfg), *args],
                       capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


# -- case 7 --------------------------------------------------------------------------------------------
def test_a_second_daemon_on_the_same_zones_refuses_naming_the_first(request, tmp_path, redis_server, redis_conn, irods):
    pl = pipeline(request, tmp_path, redis_server.url, irods)
    first = Proc(pl.config_path, tmp_path / "first.log", "run")
    second: Proc | None = None
    try:
        assert wait_for(lambda: "running with 1 zones" in first.text(), timeout=15), first.text()
        second = Proc(pl.config_path, tmp_path / "second.log", "run")
        assert wait_for(lambda: second.p.poll() is not None, timeout=15), "a second daemon runs on the same zones"
        assert second.p.returncode == 1
        err = second.text()
        assert f"zone 'z' is run by the daemon on host {socket.gethostname()} (pid {first.p.pid}" in err, err
        rels = write_files(pl.root, 40)  # type: ignore[arg-type]
        assert wait_for(lambda: pl.ledger.stats("z")["queued"] == 40, timeout=20)
        pl.work()
        assert first.p.poll() is None
        st = cli_json(pl.config_path, "status", "--json")
        assert [(d["host"], d["pid"]) for d in st["daemons"]] == [(socket.gethostname(), first.p.pid)]
    finally:
        assert first.stop() == 0
        if second is not None:
            second.stop()
    objs = pl.objects()
    assert sorted(objs) == sorted(f"{pl.collection}/{rel}" for rel in rels)
    s = pl.ledger.stats("z")
    assert (s["queued"], s["done"], s["failed"]) == (0, 40, 0)


def test_a_daemon_whose_zone_was_taken_over_stops_queueing(tmp_path, redis_server, redis_conn, caplog):
    """This daemon was cut off (or stopped) longer than the lock's TTL and another took the zone: it stops
    instead of queueing beside the other."""
    from tests.daemon_harness import DaemonThread, make_config, queued

    (tmp_path / "z").mkdir()
    cfg = make_config(tmp_path, redis_server.url, [{"name": "z", "path": str(tmp_path / "z"),
                                                    "collection": "/tempZone/home/rods/z", "settle": "0.3s"}])
    with DaemonThread(cfg, redis_conn) as dt:
        # taken and recorded (start() is past acquire: a key taken before would refuse the start instead)
        assert wait_for(lambda: redis_conn.hget("ingestd:claims", "z") and dt.daemon.zones, timeout=10)
        other = {"host": "otherhost", "pid": 4242, "pidns": "pid:[1]", "since": time.time(), "token": "t"}
        redis_conn.set("ingestd:owner:z", json.dumps(other), px=30_000)  # as if our key had expired
        assert wait_for(lambda: dt.daemon.exit_code == 1, timeout=10)
        (tmp_path / "z" / "late.txt").write_text("x")
        time.sleep(1.5)
        assert queued(redis_conn) == []
        assert json.loads(redis_conn.get("ingestd:owner:z"))["host"] == "otherhost"  # not released by us
    assert "another daemon took over a zone of this one" in caplog.text
    assert "zone 'z' is run by the daemon on host otherhost (pid 4242" in caplog.text


def test_racing_enqueuers_never_queue_a_file_twice(redis_conn):
    """Two daemons' worth of enqueuers offer the same files at once: each version is queued exactly once,
    and the `queued` counter is the number of files queued."""
    zone = ZoneSpec(name="z", root="/landing", collection="/tempZone/home/rods/z")
    files = [FileItem(f"d{i % 9}/f{i}", 10, 1_000 + i) for i in range(400)]
    ledger = Ledger(redis_conn)
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def offer(seed: int) -> None:
        r = redis.Redis(connection_pool=redis_conn.connection_pool)
        e = Enqueuer(r, Ledger(r), QueueConfig(name="race", batch_files=7))
        start.wait()
        try:
            for k in range(0, 400, 25):
                chunk = files[(k + seed * 50) % 400:][:25] or files[:25]
                e.enqueue(zone, chunk)
            e.enqueue(zone, files)
        except BaseException as ex:  # noqa: BLE001
            errors.append(ex)

    threads = [threading.Thread(target=offer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    got = jobs_files(redis_conn, "race")
    assert len(got) == len(set(got)) == 400
    assert ledger.stats("z")["queued"] == 400


def test_queued_counter_does_not_drift_when_a_queued_file_changes(redis_conn):
    zone = ZoneSpec(name="z", root="/landing", collection="/tempZone/home/rods/z")
    ledger = Ledger(redis_conn)
    e = Enqueuer(redis_conn, ledger, QueueConfig(name="drift"))
    assert e.enqueue(zone, [FileItem("a", 1, 1)]) == 1
    assert e.enqueue(zone, [FileItem("a", 2, 2)]) == 1  # a new version while the first is still queued
    assert ledger.stats("z")["queued"] == 1  # one file is outstanding, not two
    assert not ledger.mark_done("z", "a", 1, 1, b"")  # the old job's result is dropped
    assert ledger.mark_done("z", "a", 2, 2, b"")
    assert ledger.stats("z")["queued"] == 0


def test_a_drifted_counter_is_recounted_at_start_and_the_daemon_queues_again(request, tmp_path, redis_server,
                                                                              redis_conn, irods):
    """`queued` reached max_backlog by drift: the daemon recounts it from the ledger at start instead of
    waiting for a backlog that does not exist."""
    pl = pipeline(request, tmp_path, redis_server.url, irods)
    redis_conn.hset("ingestd:s:z", "queued", pl.cfg.queue.max_backlog)
    rels = write_files(pl.root, 5)  # type: ignore[arg-type]
    with pl:
        assert wait_for(lambda: len(jobs_files(redis_conn)) == 5, timeout=15), pl.ledger.stats("z")
        assert pl.ledger.stats("z")["queued"] == 5
        pl.drain(min_done=5)
    assert sorted(pl.objects()) == sorted(f"{pl.collection}/{rel}" for rel in rels)
    assert pl.ledger.stats("z")["queued"] == 0


def test_status_recount_repairs_the_counter(request, tmp_path, redis_server, redis_conn, irods):
    pl = pipeline(request, tmp_path, redis_server.url, irods)
    write_files(pl.root, 3)  # type: ignore[arg-type]
    with pl:
        assert wait_for(lambda: pl.ledger.stats("z")["queued"] == 3, timeout=15)
    redis_conn.hset("ingestd:s:z", "queued", 42)
    out = cli_json(pl.config_path, "status", "--json", "--recount")
    assert out["recounted"] == {"z": {"before": 42, "after": 3}}
    assert out["zones"]["z"]["queued"] == 3
    assert pl.ledger.stats("z")["queued"] == 3


def test_status_shows_each_daemon_by_host_and_pid(request, tmp_path, redis_server, redis_conn, irods):
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    one = pipeline(request, tmp_path / "one", redis_server.url, irods, name="one")  # two daemons, other zones
    two = pipeline(request, tmp_path / "two", redis_server.url, irods, name="two")
    a = Proc(one.config_path, tmp_path / "a.log", "run")
    b = Proc(two.config_path, tmp_path / "b.log", "run")
    try:
        def daemons() -> list[tuple[str, int]]:
            return sorted((d["host"], d["pid"]) for d in cli_json(one.config_path, "status", "--json")["daemons"])
        want = sorted([(socket.gethostname(), a.p.pid), (socket.gethostname(), b.p.pid)])
        assert wait_for(lambda: daemons() == want, timeout=20), (daemons(), a.text(), b.text())
    finally:
        assert a.stop() == 0
        assert b.stop() == 0
    assert cli_json(one.config_path, "status", "--json")["daemons"] == []  # a stopped daemon leaves no record


# -- case 8 --------------------------------------------------------------------------------------------
def test_files_whose_jobs_were_lost_are_queued_again_by_the_next_walk(request, tmp_path, redis_server, redis_conn,
                                                                      irods):
    pl = pipeline(request, tmp_path, redis_server.url, irods)  # rescan 1 s
    rels = write_files(pl.root, 3)  # type: ignore[arg-type]
    with pl:
        assert wait_for(lambda: len(jobs_files(redis_conn)) == 3, timeout=15)
        Queue(QUEUE, connection=redis_conn).empty()  # `rq empty`: the jobs are gone, the ledger says queued
        assert jobs_files(redis_conn) == []
        assert wait_for(lambda: len(jobs_files(redis_conn)) == 3, timeout=15), "the lost jobs were never repaired"
        assert pl.ledger.stats("z")["queued"] == 3
        pl.drain(min_done=3)
    assert sorted(pl.objects()) == sorted(f"{pl.collection}/{rel}" for rel in rels)
    s = pl.ledger.stats("z")
    assert (s["queued"], s["done"]) == (0, 3)


def test_a_job_whose_queue_key_was_evicted_is_queued_again(request, tmp_path, redis_server, redis_conn, irods):
    """Eviction took the queue's list but left the job records: the jobs would never run."""
    pl = pipeline(request, tmp_path, redis_server.url, irods)
    write_files(pl.root, 4)  # type: ignore[arg-type]
    with pl:
        assert wait_for(lambda: len(jobs_files(redis_conn)) == 4, timeout=15)
        q = Queue(QUEUE, connection=redis_conn)
        redis_conn.delete(q.key)
        assert q.count == 0
        assert wait_for(lambda: len(jobs_files(redis_conn)) == 4, timeout=15), "the lost jobs were never repaired"
        pl.drain(min_done=4)
    assert len(pl.objects()) == 4
    assert pl.ledger.stats("z")["queued"] == 0


def test_scan_queues_files_whose_jobs_were_lost(request, tmp_path, redis_server, redis_conn, irods):
    pl = pipeline(request, tmp_path, redis_server.url, irods, zone={"rescan": "1h"})
    write_files(pl.root, 3)  # type: ignore[arg-type]
    with pl:
        assert wait_for(lambda: len(jobs_files(redis_conn)) == 3, timeout=15)
    Queue(QUEUE, connection=redis_conn).empty()
    r = subprocess.run([sys.executable, "-m", "irods_ingestd", "--log-target", "stderr", "-c", str(pl.config_path),
                        "scan"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "scan: sent 3 files to the queue" in r.stdout, r.stdout + r.stderr
    assert len(jobs_files(redis_conn)) == 3
    assert pl.ledger.stats("z")["queued"] == 3


# -- case 2 (daemon side) ------------------------------------------------------------------------------
def test_a_file_growing_again_after_it_was_queued_is_queued_again_within_settle(request, tmp_path, redis_server,
                                                                                  redis_conn, irods):
    """The writer pauses longer than settle (the file is queued), then writes more without closing: the new
    version is queued within about settle, not at the next rescan (1 h here)."""
    pl = pipeline(request, tmp_path, redis_server.url, irods, zone={"settle": "0.5s", "rescan": "1h"})
    path = pl.root / "growing.dat"  # type: ignore[operator]
    with pl, open(path, "wb") as f:
        f.write(b"a" * 1000)
        f.flush()
        assert wait_for(lambda: [x[1] for x in jobs_files(redis_conn)] == [1000], timeout=10)
        f.write(b"b" * 1000)  # still open: no close-write event
        f.flush()
        grown = time.monotonic()
        assert wait_for(lambda: 2000 in [x[1] for x in jobs_files(redis_conn)], timeout=10), \
            "the grown file was not queued again"
        took = time.monotonic() - grown
        assert took < 2.5, f"queued again {took:.1f}s after it grew (settle 0.5 s)"
        f.write(b"c" * 1000)
        f.flush()
        os.fsync(f.fileno())
        assert wait_for(lambda: 3000 in [x[1] for x in jobs_files(redis_conn)], timeout=10)
    with pl:
        pl.drain(min_done=1)
    obj = pl.objects()[f"{pl.collection}/growing.dat"]
    from irods.models import DataObject

    assert obj[DataObject.size] == 3000
    e = pl.ledger.get("z", "growing.dat")
    assert e is not None and e.state != QUEUED and e.size == 3000
    assert pl.ledger.stats("z")["queued"] == 0
