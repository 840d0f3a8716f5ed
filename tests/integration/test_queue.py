"""The queue and the ledger against a real Redis: batching, de-duplication, backlog, failed jobs."""

from __future__ import annotations

from pathlib import Path

from rq import Queue, SimpleWorker
from rq.registry import FailedJobRegistry

from irods_ingestd.config import QueueConfig
from irods_ingestd.job import Batch, FileItem, ZoneSpec
from irods_ingestd.ledger import DONE, FAILED, QUEUED, Ledger
from irods_ingestd.queue import JOB_RETRIES, Enqueuer, make_batches

ZONE = ZoneSpec(name="z", root="/landing", collection="/tempZone/home/rods/z")


def files(n: int, size: int = 10) -> list[FileItem]:
    return [FileItem(f"d{i % 7}/f{i}", size, 1_000_000 + i) for i in range(n)]


def test_batches_by_count_and_bytes():
    fs = [FileItem("a", 10, 1), FileItem("b", 10, 1), FileItem("big", 1000, 1), FileItem("c", 10, 1)]
    assert [len(b.files) for b in make_batches(ZONE, fs, 2, 100)] == [2, 1, 1]
    assert [len(b.files) for b in make_batches(ZONE, fs, 50, 25)] == [2, 1, 1]
    assert [len(b.files) for b in make_batches(ZONE, files(120), 50, 10**9)] == [50, 50, 20]


def test_job_record_round_trip_and_version_check():
    b = Batch(ZONE, (FileItem("x/\udce9t\u00e9.txt", 5, 7),))
    rec = b.to_record()
    assert Batch.from_record(rec) == b and Batch.from_record(rec).id == b.id
    rec["v"] = 99
    try:
        Batch.from_record(rec)
    except ValueError as e:
        assert "version" in str(e)
    else:
        raise AssertionError("a record of another version was accepted")


def test_enqueue_once_per_version(redis_conn):
    ledger = Ledger(redis_conn)
    e = Enqueuer(redis_conn, ledger, QueueConfig(name="q1", batch_files=50))
    fs = files(120)
    assert e.enqueue(ZONE, fs) == 120
    assert Queue("q1", connection=redis_conn).count == 3
    assert e.enqueue(ZONE, fs) == 0  # already queued at the same size and mtime
    changed = [FileItem(fs[0].rel, 11, fs[0].mtime_ns)]
    assert e.enqueue(ZONE, changed) == 1  # a new version is queued again
    assert ledger.stats("z")["queued"] == 120  # still 120 files outstanding (the old version's job is void)
    assert ledger.get("z", fs[5].rel).state == QUEUED
    ledger.mark_done("z", fs[5].rel, fs[5].size, fs[5].mtime_ns, b"\x01" * 32)
    assert ledger.get("z", fs[5].rel).state == DONE
    assert e.enqueue(ZONE, [fs[5]]) == 0
    assert ledger.stats("z")["queued"] == 119 and ledger.stats("z")["done"] == 1


def test_result_of_an_older_version_does_not_clobber_a_newer_queued_one(redis_conn):
    ledger = Ledger(redis_conn)
    e = Enqueuer(redis_conn, ledger, QueueConfig(name="q1"))
    e.enqueue(ZONE, [FileItem("a", 1, 1)])
    e.enqueue(ZONE, [FileItem("a", 2, 2)])  # the file changed and was queued again
    assert not ledger.mark_done("z", "a", 1, 1, b"")  # the old job finishing
    entry = ledger.get("z", "a")
    assert entry.state == QUEUED and entry.size == 2


def test_backlog_is_bounded(redis_conn):
    e = Enqueuer(redis_conn, Ledger(redis_conn), QueueConfig(name="q1", max_backlog=100))
    e.enqueue(ZONE, files(80))
    assert e.room() == 20
    e.enqueue(ZONE, files(120)[80:])
    assert e.room() == 0


def test_a_job_that_fails_all_retries_leaves_its_files_failed_not_queued(redis_conn, redis_server,
                                                                          monkeypatch, tmp_path: Path):
    monkeypatch.setenv("IRODS_INGESTD_CONFIG", str(tmp_path / "missing.toml"))  # the job will raise
    ledger = Ledger(redis_conn)
    e = Enqueuer(redis_conn, ledger, QueueConfig(name="q2"))
    fs = files(3)
    e.enqueue(ZONE, fs)
    ledger.mark_done("z", fs[0].rel, fs[0].size, fs[0].mtime_ns, b"")  # one was done before it died
    q = Queue("q2", connection=redis_conn)
    SimpleWorker([q], connection=redis_conn).work(burst=True)
    assert FailedJobRegistry(queue=q).count == 1
    told: list[tuple[str, str, str]] = []
    assert e.reap(lambda zone, f, why: told.append((zone.name, f.rel, why))) == 2
    assert sorted(rel for _, rel, _ in told) == sorted(f.rel for f in fs[1:])  # the daemon's webhook hook
    assert all(z == "z" and "job failed" in why for z, _, why in told)
    assert FailedJobRegistry(queue=q).count == 0
    assert ledger.get("z", fs[0].rel).state == DONE
    failed = dict(ledger.failures("z"))
    assert sorted(failed) == sorted(f.rel for f in fs[1:])
    assert f"job failed {JOB_RETRIES + 1} times" in failed[fs[1].rel]["reason"]
    assert "missing.toml" in failed[fs[1].rel]["reason"]
    assert ledger.get("z", fs[1].rel).state == FAILED
    assert ledger.stats("z")["queued"] == 0


def test_a_file_offered_twice_at_once_is_queued_once(redis_conn):
    ledger = Ledger(redis_conn)
    e = Enqueuer(redis_conn, ledger, QueueConfig(name="q3"))
    f = FileItem("d/twice", 5, 5)
    assert e.enqueue(ZONE, [f, FileItem("d/other", 1, 1), f]) == 2
    assert ledger.stats("z")["queued"] == 2
    jobs = Queue("q3", connection=redis_conn).get_jobs()
    assert sorted(x.rel for j in jobs for x in Batch.from_record(j.args[0]).files) == ["d/other", "d/twice"]
