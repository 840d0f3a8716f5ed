"""Jobs stranded between RQ's queue and a worker: put back on the queue.

An RQ worker takes a job by moving its id from the queue's list to the queue's *intermediate* list
(BLMOVE), then, in a second step, marks it started and adds it to the started registry. If the worker
loses Redis between the two (a Sentinel failover that promotes a replica which heard the move but not
the start; a worker killed at that moment), the job is in no list a worker takes from and in no registry
whose heartbeat expires: RQ's own maintenance fails it only after a minute or more, and the walk's
lost-job check counts the intermediate list as waiting. The daemon's reaper (every few seconds) looks
at the intermediate list: an id whose job stayed queued (not started) there for `grace` seconds is moved back to the
head of the queue, atomically and only if it is still stranded, so a worker runs it next. A job whose
record is gone only leaves the intermediate list (its files, still queued in the ledger, are queued
again by the next walk's lost-job check).

A worker between its two steps for longer than `grace` (it takes milliseconds) would run the job
beside the worker that takes it again; the per-file locks and the ledger's version checks make that a
wasted run, not a second copy.
"""

from __future__ import annotations

import logging
import time

import redis
from rq import Queue
from rq.job import Job

log = logging.getLogger(__name__)

GRACE = 20.0  # seconds an id may sit in the intermediate list, not started, before it is put back

# A job is started when its status says so: RQ marks it started and adds its execution to the started
# registry in one transaction (the registry holds "id:execution" keys, not ids). A worker listening on
# several queues leaves the id in the intermediate list while it runs and after; a retried job is then
# queued again with its old id still there, so an id already waiting in the queue is not pushed twice.
# KEYS: intermediate list, queue list. ARGV: job key prefix, job id.
# Returns 1 put back, 2 dropped (no job record), 3 stale entry removed (the job waits in the queue),
# 0 not stranded (any more).
_PUT_BACK_LUA = """
local id = ARGV[2]
if not redis.call('LPOS', KEYS[1], id) then return 0 end
local key = ARGV[1] .. id
if redis.call('EXISTS', key) == 0 then
  redis.call('LREM', KEYS[1], 1, id)
  return 2
end
if redis.call('HGET', key, 'status') ~= 'queued' then return 0 end
redis.call('LREM', KEYS[1], 1, id)
if redis.call('LPOS', KEYS[2], id) then return 3 end
redis.call('LPUSH', KEYS[2], id)
return 1
"""


class StuckJobs:
    """Remembers when each stranded id was first seen; puts back those stranded for `grace` seconds."""

    def __init__(self, r: redis.Redis, queue: Queue, grace: float = GRACE) -> None:
        self.r = r
        self.queue = queue
        self.grace = grace
        self._first_seen: dict[str, float] = {}
        self._put_back = r.register_script(_PUT_BACK_LUA)

    def _stranded(self) -> list[str]:
        """Ids in the intermediate list whose job is not started (queued, or its record gone)."""
        ids = [x.decode() for x in self.r.lrange(self.queue.intermediate_queue_key, 0, -1)]
        if not ids:
            return []
        with self.r.pipeline(transaction=False) as p:
            for i in ids:
                p.hget(Job.key_for(i), "status")
            status = p.execute()
        return [i for i, st in zip(ids, status, strict=True) if st in (None, b"queued")]

    def repair(self, now: float | None = None) -> int:
        """Put back the jobs stranded for `grace` seconds; returns how many went back on the queue."""
        now = time.monotonic() if now is None else now
        stranded = self._stranded()
        self._first_seen = {i: self._first_seen.get(i, now) for i in stranded}
        keys = [self.queue.intermediate_queue_key, self.queue.key]
        back = 0
        for job_id, seen in list(self._first_seen.items()):
            if now - seen < self.grace:
                continue
            res = int(self._put_back(keys=keys, args=[Job.redis_job_namespace_prefix, job_id]))
            del self._first_seen[job_id]
            if res == 1:
                back += 1
                log.warning("job %s was taken from the queue %s but never started (its worker lost Redis, or "
                            "a failover lost the start): put back on the queue", job_id, self.queue.name)
            elif res == 2:
                log.warning("job %s was taken from the queue %s but its record is gone: dropped (its files "
                            "are queued again by the next walk)", job_id, self.queue.name)
        return back
