"""Issue 11, the worker's side: each way the promise broke when tried adversarially, through the pipeline
(daemon thread, real RQ workers in bursts, real Redis, the real iRODS unless marked standin)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from irods.models import DataObject

from irods_ingestd import ingest, locks
from irods_ingestd.actions import status
from irods_ingestd.ingest import transfer
from irods_ingestd.job import Batch
from tests.expect import sha2
from tests.pipeline_harness import Pipeline, pipelines, until


def checksums(pipe: Pipeline) -> dict[str, str]:
    return {p[len(pipe.collection) + 1:]: row[DataObject.checksum] for p, row in pipe.objects().items()}


def avus(pipe: Pipeline, rel: str) -> dict[str, str]:
    with pipe.irods.session() as s:
        return {m.name: m.value for m in s.metadata.get(DataObject, f"{pipe.collection}/{rel}")}


@pytest.fixture
def make_pipe(tmp_path: Path, redis_server: Any, redis_conn: Any, irods: Any) -> Any:
    with pipelines(tmp_path, redis_server.url, irods) as make:
        yield make


# --- 1. a later file with the same name never destroys the earlier one -----------------------------------
@pytest.mark.parametrize("after", ["delete", "move"])
def test_a_reused_name_keeps_every_version(make_pipe: Any, tmp_path: Path, after: str) -> None:
    done = tmp_path / "done"
    zone: dict[str, Any] = {"after": after, "after_hold": "0.2s"}
    if after == "move":
        zone["move_to"] = str(done)
    pipe = make_pipe(**zone)
    f = pipe.root / "run" / "RunInfo.xml"
    v1, v2 = b"<run>one</run>\n", b"<run>the second, different run</run>\n"
    with pipe:
        f.parent.mkdir()
        f.write_bytes(v1)
        until(pipe, lambda: not f.exists(), what="v1 to leave the landing zone")
        f.write_bytes(v2)
        until(pipe, lambda: not f.exists(), what="v2 to leave the landing zone")
    objs = checksums(pipe)
    assert objs == {"run/RunInfo.xml": sha2(v2), "run/RunInfo.xml.~1~": sha2(v1)}, objs
    assert "ingestd::superseded" in avus(pipe, "run/RunInfo.xml.~1~")
    if after == "move":  # never overwritten in move_to either
        assert (done / "run/RunInfo.xml").read_bytes() == v1
        assert (done / "run/RunInfo.xml.~1~").read_bytes() == v2
    assert dict(pipe.ledger.failures("z")) == {}


# --- 2. a writer that pauses longer than settle -----------------------------------------------------------
def test_a_file_still_open_for_writing_is_not_deleted(make_pipe: Any) -> None:
    pipe = make_pipe(after="delete", after_hold="0s")
    path = pipe.root / "slow.dat"
    with pipe, open(path, "wb") as w:
        w.write(b"first half, ")
        w.flush()
        until(pipe, lambda: "slow.dat" in checksums(pipe), what="the paused file to be ingested")
        for _ in range(10):  # well past settle and several worker runs: the writer still holds it open
            pipe.work()
            time.sleep(0.2)
        assert path.exists(), "deleted while a writer still had it open"
        w.write(b"second half")
        w.close()
        until(pipe, lambda: not path.exists(), what="the complete file to be ingested and deleted")
    objs = checksums(pipe)
    assert objs["slow.dat"] == sha2(b"first half, second half"), objs
    assert objs.get("slow.dat.~1~") == sha2(b"first half, ")  # the early copy is kept, not overwritten
    assert dict(pipe.ledger.failures("z")) == {}


# --- 3. delete never removes a file it did not verify -----------------------------------------------------
def test_a_file_swapped_in_after_verification_is_not_deleted_but_ingested(make_pipe: Any) -> None:
    pipe = make_pipe(after="delete", after_hold="3s")
    path = pipe.root / "data.bin"
    a, b = b"A" * 1000, b"B" * 1000
    with pipe:
        path.write_bytes(a)
        until(pipe, lambda: "data.bin" in checksums(pipe), what="A to be ingested")
        assert status.gather(pipe.cfg)["zones"]["z"]["after_pending"] == 1  # verified, held before the delete
        st = os.stat(path)
        tmp = pipe.root / ".data.bin.swap"
        tmp.write_bytes(b)
        os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size, same mtime: only the inode differs
        os.rename(tmp, path)
        until(pipe, lambda: checksums(pipe).get("data.bin") == sha2(b) and not path.exists(), timeout=60,
              what="B to be ingested, then deleted")
    objs = checksums(pipe)
    assert objs == {"data.bin": sha2(b), "data.bin.~1~": sha2(a)}, objs


# --- 4. reserved names: a user's objects that look like ours are left alone -------------------------------
def test_objects_named_like_temporary_copies_are_never_touched(make_pipe: Any) -> None:
    pipe = make_pipe(temp_patterns=[])  # a zone whose patterns lack *.part
    users = {".x.ingestd.part": b"the user's own x", ".y.ingestd-old.part": b"the user's own y"}
    with pipe:
        for name, data in users.items():
            (pipe.root / name).write_bytes(data)
        pipe.drain(min_done=2)
        (pipe.root / "x").write_bytes(b"x itself")
        (pipe.root / "y").write_bytes(b"y itself")
        pipe.drain(min_done=4)
    objs = checksums(pipe)
    assert objs == {".x.ingestd.part": sha2(users[".x.ingestd.part"]), "x": sha2(b"x itself"),
                    ".y.ingestd-old.part": sha2(users[".y.ingestd-old.part"]), "y": sha2(b"y itself")}, objs


# --- 6. a followed link re-pointed outside the zone after it was queued -----------------------------------
def test_a_link_repointed_outside_the_zone_is_not_ingested(make_pipe: Any, tmp_path: Path) -> None:
    pipe = make_pipe(symlinks="follow")
    inside, outside = pipe.root / "inside.dat", tmp_path / "secret.dat"
    inside.write_bytes(b"public bytes")
    outside.write_bytes(b"secret bytes")  # same size
    st = os.stat(inside)
    os.utime(outside, ns=(st.st_atime_ns, st.st_mtime_ns))
    link = pipe.root / "link.dat"
    with pipe:
        link.symlink_to(inside)
        deadline = time.monotonic() + 15
        while pipe.ledger.stats("z")["queued"] < 2:  # both queued, no worker has run yet
            assert time.monotonic() < deadline
            time.sleep(0.05)
        link.unlink()
        link.symlink_to(outside)
        pipe.drain()
    objs = checksums(pipe)
    assert objs.get("link.dat") != sha2(b"secret bytes"), objs
    assert objs["inside.dat"] == sha2(b"public bytes")
    failures = dict(pipe.ledger.failures("z"))
    assert "outside the zone" in failures["link.dat"]["reason"], failures


# --- 9. an outage longer than the retry budget fails nothing for good -------------------------------------
@pytest.mark.standin  # the server refuses connections on demand
def test_an_irods_outage_longer_than_the_retries_needs_no_human(make_pipe: Any) -> None:
    pipe = make_pipe()
    with pipe:
        pipe.irods.refuse_connections(True)
        try:
            for i in range(5):
                (pipe.root / f"f{i}.dat").write_bytes(b"x" * (i + 1))
            for _ in range(6):  # several jobs, each past its retries (2, backoff 0.1 s)
                pipe.work()
                time.sleep(0.5)
            assert dict(pipe.ledger.failures("z")) == {}, "an outage must not fail files for good"
            z = status.gather(pipe.cfg)["zones"]["z"]
            assert z["retrying"] >= 1 and z["failed"] == 0, z  # status tells the operator what happens
            assert "retrying" in status.render(status.gather(pipe.cfg))
        finally:
            pipe.irods.refuse_connections(False)
        assert checksums(pipe) == {}  # nothing got in during the outage
        pipe.drain(min_done=5, timeout=60)
    assert len(checksums(pipe)) == 5
    assert dict(pipe.ledger.failures("z")) == {}


# --- 10. a collection removed by an admin: later files into it are not failed -----------------------------
def test_a_collection_removed_in_irods_is_made_again(make_pipe: Any) -> None:
    pipe = make_pipe()
    with pipe:
        (pipe.root / "a").mkdir()
        (pipe.root / "a" / "x.dat").write_bytes(b"x")
        pipe.drain(min_done=1)
        with pipe.irods.session() as s:
            s.collections.remove(f"{pipe.collection}/a", recurse=True, force=True)
        (pipe.root / "a" / "y.dat").write_bytes(b"y")
        pipe.drain(min_done=2)
    assert checksums(pipe) == {"a/y.dat": sha2(b"y")}
    assert dict(pipe.ledger.failures("z")) == {}


# --- 11. names too long once mapped leave nothing behind ---------------------------------------------------
def test_a_name_too_long_once_mapped_fails_and_leaves_no_object(make_pipe: Any) -> None:
    pipe = make_pipe()
    with pipe:
        name = b"\xff" * 100  # 100 bytes on disk, 300 once mapped to %FF
        with open(os.path.join(os.fsencode(pipe.root), name), "wb") as f:
            f.write(b"data")
        pipe.drain()
    assert checksums(pipe) == {}
    (rel, info), = pipe.ledger.failures("z")
    assert "once mapped" in info["reason"], info


# --- 12. a worker frozen past its lock TTL does not write over another worker's result ---------------------
def test_a_worker_that_lost_its_lock_leaves_the_file_alone(make_pipe: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    pipe = make_pipe(after="delete", after_hold="0s")
    (pipe.root / "f.dat").write_bytes(b"payload")
    st = os.stat(pipe.root / "f.dat")
    from irods_ingestd import tasks
    from irods_ingestd.job import FileItem, ZoneSpec

    zone = ZoneSpec.from_config(pipe.cfg.zones[0])
    item = FileItem("f.dat", st.st_size, st.st_mtime_ns)
    p = pipe.r.pipeline()
    pipe.ledger.mark_queued(p, "z", [(item.rel, item.size, item.mtime_ns)])
    p.execute()
    monkeypatch.setattr(locks.FileLock.__init__, "__defaults__", (1.0, True))  # ttl 1 s, keeper on
    monkeypatch.setattr(locks.FileLock, "_keep", lambda self: None)  # frozen: nothing renews the lock
    frozen, other = tasks.make_context(pipe.cfg), tasks.make_context(pipe.cfg)
    real_copy = transfer.copy_stream
    go = threading.Event()

    def slow_copy(*a: Any, **kw: Any) -> Any:
        go.set()
        time.sleep(2.5)  # "SIGSTOP": the lock expires meanwhile
        return real_copy(*a, **kw)

    results: list[ingest.FileResult] = []
    monkeypatch.setattr(transfer, "copy_stream", slow_copy)
    t = threading.Thread(target=lambda: results.append(ingest.ingest_file(frozen, zone, item)))
    t.start()
    assert go.wait(10)
    time.sleep(1.5)
    monkeypatch.setattr(transfer, "copy_stream", real_copy)
    ok = ingest.ingest_batch(other, Batch(zone, (item,)))  # the second worker takes the file over
    assert ok["ingested"] == 1, ok
    t.join(30)
    assert results and results[0].result == ingest.LOST, results
    assert dict(pipe.ledger.failures("z")) == {}  # no false "failed" over the other worker's ingest
    assert not (pipe.root / "f.dat").exists()
    assert checksums(pipe) == {"f.dat": sha2(b"payload")}
    for c in (frozen, other):
        c.sessions.cleanup()


# --- 13. a transfer longer than job_timeout: the job's timeout is sized to its bytes -------------------------
def test_a_large_file_gets_a_job_timeout_sized_to_it(redis_conn: Any) -> None:
    from rq import Queue

    from irods_ingestd.config import QueueConfig
    from irods_ingestd.job import FileItem, ZoneSpec
    from irods_ingestd.ledger import Ledger
    from irods_ingestd.queue import Enqueuer

    cfg = QueueConfig(name="timeouts", job_timeout=3600.0, slowest_rate=5 * 1024 * 1024)
    enq = Enqueuer(redis_conn, Ledger(redis_conn), cfg)
    zone = ZoneSpec("z", "/landing", "/tempZone/home/rods/z")
    small = [FileItem(f"s{i}", 4096, i) for i in range(3)]
    huge = FileItem("genome.bam", 200 << 30, 1)  # 200 GiB: a batch of its own (over batch_bytes)
    assert enq.enqueue(zone, [*small, huge]) == 4
    timeouts = {len(j.args[0]["files"]): j.timeout for j in Queue("timeouts", connection=redis_conn).get_jobs()}
    assert timeouts[3] < 3700  # small files: about job_timeout
    assert timeouts[1] >= 3600 + (200 << 30) // (5 << 20)  # the huge file: 1 h + 200 GiB at 5 MiB/s (~11 h)


def test_a_followed_link_in_a_delete_zone_is_removed_not_its_target(make_pipe: Any) -> None:
    pipe = make_pipe(symlinks="follow", after="delete", after_hold="0s", exclude=["*.keep"])
    target, link = pipe.root / "data.keep", pipe.root / "alias.bin"
    with pipe:
        target.write_bytes(b"bytes behind a link")
        link.symlink_to(target.name)  # relative, inside the zone; the target itself is excluded
        until(pipe, lambda: not os.path.lexists(link), what="the link to be removed once verified")
    assert target.read_bytes() == b"bytes behind a link"  # the link went, not the file it leads to
    assert checksums(pipe) == {"alias.bin": sha2(b"bytes behind a link")}
    assert dict(pipe.ledger.failures("z")) == {}


def test_a_deferred_after_action_whose_job_is_lost_comes_due_again(make_pipe: Any,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon handed a due delete to a job that was lost (a worker killed, the job abandoned): the action
    stays in its set under a lease and is handed out again, so the landing file does go (and a file swapped
    in under it is still noticed)."""
    from rq import Queue

    from irods_ingestd.ingest import after

    monkeypatch.setattr(after, "LEASE", 2.0)
    pipe = make_pipe(after="delete", after_hold="0.5s")
    path = pipe.root / "x.dat"
    with pipe:
        path.write_bytes(b"first")
        until(pipe, lambda: "x.dat" in checksums(pipe), what="x to be ingested")
        deadline = time.monotonic() + 20  # the daemon hands the due action to a job: lose that job
        q = Queue(pipe.cfg.queue.name, connection=pipe.r)
        while not any(j.func_name.endswith("after_batch") for j in q.get_jobs()):
            assert time.monotonic() < deadline, "no after-action job was queued"
            time.sleep(0.1)
        q.empty()
        assert path.exists() and status.gather(pipe.cfg)["zones"]["z"]["after_pending"] == 1
        until(pipe, lambda: not path.exists(), what="the action to come due again and run")
    assert status.gather(pipe.cfg)["zones"]["z"]["after_pending"] == 0
    assert checksums(pipe) == {"x.dat": sha2(b"first")}
