"""The queue: ready files go to RQ in batches, once per version of a file.

RQ's job id does not de-duplicate, so the ledger keeps the state: a file already queued, ingested or
failed at the same size and mtime is never queued again. The check and the write are one optimistic
Redis transaction: the zone's enqueue generation is WATCHed, the entries read, and the files marked
queued, their jobs enqueued and the generation bumped in one MULTI/EXEC, which fails (and is tried again
from the read) if another enqueuer of the zone got in between. So two enqueuers racing on one file (two
daemons, a `scan` beside the daemon) queue it once, and a crash cannot leave a ledger entry without its
job or a job without its entry.
Each queued entry names its job, so a walk can find a file whose job was lost (`lost_jobs`).
The backlog (files queued, not yet finished) is bounded: when it is full, `room()` says so and the daemon
waits instead of growing Redis without limit.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import redis
from rq import Queue, Retry
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.registry import DeferredJobRegistry, FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry

from . import keys
from .config import QueueConfig
from .job import TASK_FUNC, Batch, FileItem, ZoneSpec
from .ledger import FAILED, QUEUED, Ledger
from .stuck_jobs import StuckJobs

FailedHook = Callable[[ZoneSpec, FileItem, str], None]  # a file recorded failed: zone, file, reason

log = logging.getLogger(__name__)

RESULT_TTL = 600  # seconds a finished job's record stays: its summary is in the ledger and the journal
FAILURE_TTL = 7 * 86400
JOB_RETRIES = 3  # a job that raised or whose worker died is run again this many times
CHUNK_FILES = 1000  # files checked and enqueued in one transaction
WATCH_ATTEMPTS = 50


# Which of these jobs will never run: gone, ended (finished, stopped, canceled), or in no structure a
# worker takes it from (a queued job missing from the queue's list, as after an eviction; a failed,
# scheduled or deferred job missing from its registry). One atomic read; the queue's list is read
# server-side, and only when some job says it is queued. KEYS: queue list, intermediate list, failed,
# scheduled and deferred registries. ARGV: job key prefix, job ids. Returns the ids of the lost jobs.
_LOST_JOBS_LUA = """
local waiting = nil
local lost = {}
local registry = {failed = KEYS[3], scheduled = KEYS[4], deferred = KEYS[5]}
for i = 2, #ARGV do
  local id = ARGV[i]
  local status = redis.call('HGET', ARGV[1] .. id, 'status')
  local gone = false
  if not status then
    gone = (redis.call('EXISTS', ARGV[1] .. id) == 0)
  elseif status == 'finished' or status == 'stopped' or status == 'canceled' then
    gone = true
  elseif status == 'queued' then
    if waiting == nil then
      waiting = {}
      for _, key in ipairs({KEYS[1], KEYS[2]}) do
        for _, j in ipairs(redis.call('LRANGE', key, 0, -1)) do waiting[j] = true end
      end
    end
    gone = not waiting[id]
  elseif registry[status] then
    gone = not redis.call('ZSCORE', registry[status], id)
  end
  if gone then table.insert(lost, id) end
end
return lost
"""


def make_batches(zone: ZoneSpec, files: Iterable[FileItem], max_files: int, max_bytes: int) -> list[Batch]:
    """Group files into batches of at most max_files and (unless one file is larger) max_bytes."""
    out: list[Batch] = []
    cur: list[FileItem] = []
    cur_bytes = 0
    for f in files:
        if cur and (len(cur) >= max_files or cur_bytes + f.size > max_bytes):
            out.append(Batch(zone, tuple(cur)))
            cur, cur_bytes = [], 0
        cur.append(f)
        cur_bytes += f.size
    if cur:
        out.append(Batch(zone, tuple(cur)))
    return out


def job_timeout_for(cfg: QueueConfig, nbytes: int) -> int:
    """A job's timeout sized to its bytes: `job_timeout` plus the time to move them at `slowest_rate`
    (a 200 GiB file gets ~12 h at 5 MiB/s instead of failing at the same 1 h every time)."""
    return int(cfg.job_timeout + nbytes / max(1.0, cfg.slowest_rate))


class Enqueuer:
    def __init__(self, r: redis.Redis, ledger: Ledger, cfg: QueueConfig) -> None:
        self.r = r
        self.ledger = ledger
        self.cfg = cfg
        self.queue = Queue(cfg.name, connection=r)
        self._lost_jobs = r.register_script(_LOST_JOBS_LUA)
        self.stuck = StuckJobs(r, self.queue)
        self._backlog = 0
        self._backlog_at = 0.0
        self.zones: set[str] = set()  # the zones whose backlog counts (the daemon's, and any queued for)

    def backlog(self, max_age: float = 1.0) -> int:
        """Files queued and not finished, over the zones (cached for max_age seconds)."""
        now = time.monotonic()
        if now - self._backlog_at > max_age:
            self._backlog = self.ledger.outstanding(self.zones)
            self._backlog_at = now
        return self._backlog

    def waiting_jobs(self) -> int:
        """Jobs in the queue that no worker has taken yet."""
        return int(self.queue.count)

    def room(self) -> int:
        return max(0, self.cfg.max_backlog - self.backlog())

    def unknown(self, zone: str, files: Sequence[FileItem], client: Any = None) -> tuple[list[FileItem], list[str]]:
        """The files the ledger does not already hold at this size and mtime (queued, done or failed),
        and which of them had an earlier version fail (read through `client`, a WATCHing pipeline, if
        given)."""
        rels = [f.rel for f in files]
        entries = self.ledger.get_many(zone, rels) if client is None else self.ledger.get_many_on(client, zone, rels)
        new = [(f, e) for f, e in zip(files, entries, strict=True)
               if e is None or not e.same_version(f.size, f.mtime_ns)]
        return [f for f, _ in new], [f.rel for f, e in new if e is not None and e.state == FAILED]

    def enqueue(self, zone: ZoneSpec, files: Sequence[FileItem], check: bool = True) -> int:
        """Queue the files not yet known (all of them with check=False); returns how many were queued."""
        return len(self.enqueue_files(zone, files, check))

    def enqueue_files(self, zone: ZoneSpec, files: Sequence[FileItem], check: bool = True) -> list[FileItem]:
        """Queue the files not yet known (all of them with check=False); returns those queued."""
        if len({f.rel for f in files}) < len(files):  # one file ready twice (a walk and an event): once
            files = list({f.rel: f for f in files}.values())
        out: list[FileItem] = []
        for i in range(0, len(files), CHUNK_FILES):
            out += self._enqueue_chunk(zone, files[i:i + CHUNK_FILES], check)
        if out:
            self.zones.add(zone.name)
            self._backlog += len(out)
            log.debug("queued %d files of zone %s", len(out), zone.name)
        return out

    def _enqueue_chunk(self, zone: ZoneSpec, files: Sequence[FileItem], check: bool) -> list[FileItem]:
        """Check and enqueue in one optimistic transaction: WATCH the zone's enqueue generation, read the
        entries, MULTI, mark queued + enqueue + bump the generation, EXEC; again from the read if another
        enqueuer of the zone got in between. Only enqueuers bump it (workers, who write the same hashes
        but only ever take files out of `queued`, never make an enqueue try again)."""
        gen = keys.enqueue_generation_key(self.ledger.prefix, zone.name)
        self.queue.get_redis_server_version()  # RQ asks once (cached), on a connection of its own: not mid-WATCH
        for attempt in range(WATCH_ATTEMPTS):
            with self.r.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(gen)
                    new, failed = self.unknown(zone.name, files, pipe) if check else (list(files), [])
                    if not new:
                        pipe.unwatch()
                        return []
                    batches = [(b, b.id) for b in make_batches(zone, new, self.cfg.batch_files, self.cfg.batch_bytes)]
                    pipe.multi()
                    marks = ((f.rel, f.size, f.mtime_ns, bid) for b, bid in batches for f in b.files)
                    self.ledger.mark_queued(pipe, zone.name, marks, clear_failed=failed)
                    self.queue.enqueue_many([self._job_data(b, bid) for b, bid in batches], pipeline=pipe)
                    pipe.incr(gen)
                    pipe.execute()
                    return new
                except redis.WatchError:
                    time.sleep(min(0.05, 0.001 * (attempt + 1)))
        raise redis.WatchError(f"zone {zone.name}: the ledger kept changing under {len(files)} files for "
                               f"{WATCH_ATTEMPTS} attempts; they are offered again")

    def lost_jobs(self, job_ids: Iterable[str]) -> set[str]:
        """The jobs among these that will never run (see _LOST_JOBS_LUA): their files, still queued in
        the ledger, must be queued again."""
        ids = sorted(set(job_ids))
        q = self.queue
        keys = [q.key, q.intermediate_queue_key, FailedJobRegistry(queue=q).key,
                ScheduledJobRegistry(queue=q).key, DeferredJobRegistry(queue=q).key]
        lost: set[str] = set()
        for i in range(0, len(ids), 1000):
            res = self._lost_jobs(keys=keys, args=[Job.redis_job_namespace_prefix, *ids[i:i + 1000]])
            lost.update(x.decode() if isinstance(x, bytes) else str(x) for x in res)
        return lost

    def _job_data(self, b: Batch, job_id: str) -> Any:
        return Queue.prepare_data(
            TASK_FUNC, args=(b.to_record(),), job_id=job_id, timeout=job_timeout_for(self.cfg, b.bytes),
            result_ttl=RESULT_TTL, failure_ttl=FAILURE_TTL, retry=Retry(max=JOB_RETRIES),
            description=f"ingest {len(b.files)} files ({b.bytes} bytes) of zone {b.zone.name}",
        )

    def reap(self, on_failed: FailedHook | None = None) -> int:
        """Repair after dead workers and failed jobs; returns the number of files marked failed (each also
        handed to `on_failed`: the daemon's webhook).

        Jobs whose worker stopped sending heartbeats are retried (RQ's started-registry cleanup, run
        here too so it does not wait for a worker's maintenance); a job taken by a worker that never
        started it goes back on the queue (`stuck_jobs.py`); a job that failed all its retries has
        the files it still held queued recorded as failed in the ledger, with the job's error, so that
        `status` lists them and `retry` can queue them again. The job then leaves RQ's failed registry.
        """
        StartedJobRegistry(queue=self.queue).cleanup()
        self.stuck.repair()
        failed = FailedJobRegistry(queue=self.queue)
        marked = 0
        for job_id in failed.get_job_ids(0, 499):
            try:
                job = Job.fetch(job_id, connection=self.r)
            except NoSuchJobError:
                failed.remove(job_id)
                continue
            marked += self._reap_failed(failed, job, on_failed)
        return marked

    @staticmethod
    def _drop(failed: FailedJobRegistry, job: Job) -> None:
        """Remove a reaped job; rq 3.0 raises ValueError from Job.delete when the job's execution record
        is gone (an abandoned job): the registry entry goes all the same."""
        try:
            failed.remove(job, delete_job=True)
        except ValueError as e:
            log.debug("job %s: %s; removing its registry entry only", job.id, e)
            failed.remove(job.id)

    def _reap_failed(self, failed: FailedJobRegistry, job: Job, on_failed: FailedHook | None = None) -> int:
        record = job.args[0] if job.args else None
        result = job.latest_result()
        reason = _last_line(result.exc_string if result else None) or "the job failed (worker died or raised)"
        if isinstance(record, dict) and record.get("kind") in ("after", "unit"):
            log.warning("%s job %s failed: %s; its %s come due again (their copies in iRODS are verified; the "
                        "files stay until then)", "directory-check" if record["kind"] == "unit" else "after-action",
                        job.id, reason, "directories" if record["kind"] == "unit" else "actions")
            self._drop(failed, job)
            return 0
        try:
            batch = Batch.from_record(record)  # type: ignore[arg-type]
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            log.error("job %s in the failed registry is not an ingest job of this version; removed "
                      "(its files, still queued in the ledger, are queued again by the next walk)", job.id)
            self._drop(failed, job)
            return 0
        if "AbandonedJobError" in reason:
            return self._reap_abandoned(failed, job, batch, on_failed)
        marked = 0
        why = f"job failed {JOB_RETRIES + 1} times: {reason}"
        for f in batch.files:
            if self.ledger.mark_failed(batch.zone.name, f.rel, f.size, f.mtime_ns, why, kind="job",
                                       only_queued=True):
                marked += 1
                if on_failed is not None:
                    on_failed(batch.zone, f, why)
        self._drop(failed, job)
        log.error("job %s of zone %s failed for good: %s; %d of its %d files recorded as failed",
                  job.id, batch.zone.name, reason, marked, len(batch.files))
        return marked


    def _reap_abandoned(self, failed: FailedJobRegistry, job: Job, batch: Batch,
                        on_failed: FailedHook | None = None) -> int:
        """The job's worker died (SIGKILL, out of memory, a crash) on every run. A worker takes a batch's files
        in order and records each before the next, so the first file still queued for this job is the one the
        workers were on when they died: only it is recorded as failed; the others are handed back to be queued
        again in other batches, so a file that kills every worker does not take its batch with it."""
        zone = batch.zone.name
        entries = self.ledger.get_many(zone, [f.rel for f in batch.files])
        waiting = [f for f, e in zip(batch.files, entries, strict=True) if e is not None and e.state == QUEUED
                   and e.same_version(f.size, f.mtime_ns) and e.job in ("", job.id)]
        marked = 0
        if waiting:
            suspect = waiting[0]
            why = (f"the worker died while ingesting it, {JOB_RETRIES + 1} times (killed, out of memory, or a "
                   "crash); the other files of its job were queued again")
            if self.ledger.mark_failed(zone, suspect.rel, suspect.size, suspect.mtime_ns, why, kind="job",
                                       only_queued=True):
                marked = 1
                if on_failed is not None:
                    on_failed(batch.zone, suspect, why)
            for f in waiting[1:]:
                self.ledger.forget(zone, f.rel, f.size, f.mtime_ns, resettle=True)
        self._drop(failed, job)
        log.error("job %s of zone %s was abandoned %d times (its worker died); %s", job.id, zone, JOB_RETRIES + 1,
                  f"{waiting[0].rel!r} recorded as failed, {len(waiting) - 1} other files queued again" if waiting
                  else "none of its files was still waiting")
        return marked


def _last_line(text: str | None) -> str:
    lines = [x for x in (text or "").strip().splitlines() if x.strip()]
    return lines[-1].strip()[:500] if lines else ""
