"""A job a worker took from the queue but never started (it lost Redis between the two steps, or a
failover kept the take and lost the start) goes back on the queue, against a real Redis."""

from __future__ import annotations

from rq import Queue, SimpleWorker
from rq.job import Job

from irods_ingestd.config import QueueConfig
from irods_ingestd.job import FileItem, ZoneSpec
from irods_ingestd.ledger import Ledger
from irods_ingestd.queue import Enqueuer

ZONE = ZoneSpec(name="z", root="/landing", collection="/tempZone/home/rods/z")


def _enqueued(redis_conn, name: str, n: int) -> tuple[Enqueuer, Queue, list[str]]:
    e = Enqueuer(redis_conn, Ledger(redis_conn), QueueConfig(name=name, batch_files=1))
    e.enqueue(ZONE, [FileItem(f"f{i}", 5, 1_000 + i) for i in range(n)])
    q = Queue(name, connection=redis_conn)
    return e, q, q.get_job_ids()


def _take(redis_conn, q: Queue) -> str:
    """What a worker's dequeue does first: the id moves to the intermediate list."""
    _, raw = Queue.lmove(redis_conn, q.key, None)
    return raw.decode()


def _intermediate(redis_conn, q: Queue) -> list[str]:
    return [x.decode() for x in redis_conn.lrange(q.intermediate_queue_key, 0, -1)]


def test_a_taken_never_started_job_goes_back_to_the_head_of_the_queue_after_the_grace(redis_conn):
    e, q, ids = _enqueued(redis_conn, "stuck1", 3)
    taken = _take(redis_conn, q)
    assert taken == ids[0] and _intermediate(redis_conn, q) == [taken]
    assert e.lost_jobs([taken]) == set()  # the walk's check counts the intermediate list as waiting
    s = e.stuck
    assert s.repair(now=100.0) == 0  # first seen: a worker may be between its two steps
    assert s.repair(now=100.0 + s.grace - 1) == 0
    assert _intermediate(redis_conn, q) == [taken]
    assert s.repair(now=100.0 + s.grace + 1) == 1
    assert _intermediate(redis_conn, q) == []
    assert q.get_job_ids() == [taken, *ids[1:]]  # next in line, not behind the backlog
    assert Job.fetch(taken, connection=redis_conn).get_status() == "queued"
    assert s.repair(now=1000.0) == 0  # once


def test_a_started_job_and_a_job_taken_again_meanwhile_are_left_alone(redis_conn):
    e, q, ids = _enqueued(redis_conn, "stuck2", 2)
    a, b = _take(redis_conn, q), _take(redis_conn, q)
    # a: started by a worker of several queues, which leaves the id in the intermediate list while it runs
    w = SimpleWorker([q, Queue("stuck2-other", connection=redis_conn)], connection=redis_conn)
    w.prepare_job_execution(Job.fetch(a, connection=redis_conn), remove_from_intermediate_queue=False)
    assert Job.fetch(a, connection=redis_conn).get_status() == "started"
    s = e.stuck
    s.repair(now=0.0)
    redis_conn.lrem(q.intermediate_queue_key, 1, b)  # b: its worker got on with it before the grace ended
    assert s.repair(now=s.grace + 1) == 0
    assert _intermediate(redis_conn, q) == [a] and q.get_job_ids() == []


def test_a_retried_job_still_named_in_the_intermediate_list_is_not_queued_twice(redis_conn):
    e, q, ids = _enqueued(redis_conn, "stuck5", 1)
    taken = _take(redis_conn, q)
    redis_conn.rpush(q.key, taken)  # RQ queued it again (a retry) and the old entry stayed behind
    s = e.stuck
    s.repair(now=0.0)
    assert s.repair(now=s.grace + 1) == 0
    assert _intermediate(redis_conn, q) == [] and q.get_job_ids() == [taken]


def test_a_stranded_id_without_its_job_record_is_dropped(redis_conn):
    e, q, ids = _enqueued(redis_conn, "stuck3", 1)
    taken = _take(redis_conn, q)
    redis_conn.delete(Job.key_for(taken))
    s = e.stuck
    s.repair(now=0.0)
    assert s.repair(now=s.grace + 1) == 0
    assert _intermediate(redis_conn, q) == [] and q.get_job_ids() == []
    assert e.lost_jobs([taken]) == {taken}  # so the walk queues its files again


def test_the_daemons_reaper_puts_stranded_jobs_back(redis_conn):
    e, q, ids = _enqueued(redis_conn, "stuck4", 1)
    taken = _take(redis_conn, q)
    e.stuck.grace = 0.0
    e.reap()
    assert _intermediate(redis_conn, q) == [] and q.get_job_ids() == [taken]
