"""The queue: ready files go to RQ in batches, once per version of a file.

RQ's job id does not de-duplicate, so the ledger keeps the state: a file already queued, ingested or
failed at the same size and mtime is never queued again. Each pipeline marks files queued in the ledger
and enqueues their jobs in one Redis transaction, so a crash cannot leave one without the other.
The backlog (files queued, not yet finished) is bounded: when it is full, `room()` says so and the daemon
waits instead of growing Redis without limit.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any

import redis
from rq import Queue, Retry
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.registry import FailedJobRegistry, StartedJobRegistry

from .config import QueueConfig
from .job import TASK_FUNC, Batch, FileItem, ZoneSpec
from .ledger import FAILED, Ledger

log = logging.getLogger(__name__)

RESULT_TTL = 600  # seconds a finished job's record stays: its summary is in the ledger and the journal
FAILURE_TTL = 7 * 86400
JOB_RETRIES = 3  # a job that raised or whose worker died is run again this many times


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


class Enqueuer:
    def __init__(self, r: redis.Redis, ledger: Ledger, cfg: QueueConfig) -> None:
        self.r = r
        self.ledger = ledger
        self.cfg = cfg
        self.queue = Queue(cfg.name, connection=r)
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

    def unknown(self, zone: str, files: Sequence[FileItem]) -> tuple[list[FileItem], list[str]]:
        """The files the ledger does not already hold at this size and mtime (queued, done or failed),
        and which of them had an earlier version fail."""
        entries = self.ledger.get_many(zone, [f.rel for f in files])
        new = [(f, e) for f, e in zip(files, entries, strict=True)
               if e is None or not e.same_version(f.size, f.mtime_ns)]
        return [f for f, _ in new], [f.rel for f, e in new if e is not None and e.state == FAILED]

    def enqueue(self, zone: ZoneSpec, files: Sequence[FileItem], check: bool = True) -> int:
        """Queue the files not yet known (all of them with check=False); returns how many were queued."""
        failed: list[str] = []
        if len({f.rel for f in files}) < len(files):  # one file ready twice (a walk and an event): once
            files = list({f.rel: f for f in files}.values())
        if check:
            files, failed = self.unknown(zone.name, files)
        if not files:
            return 0
        self.zones.add(zone.name)
        batches = make_batches(zone, files, self.cfg.batch_files, self.cfg.batch_bytes)
        for i in range(0, len(batches), 100):
            chunk = batches[i:i + 100]
            pipe = self.r.pipeline(transaction=True)
            self.ledger.mark_queued(pipe, zone.name, ((f.rel, f.size, f.mtime_ns) for b in chunk for f in b.files),
                                    clear_failed=failed if i == 0 else ())
            self.queue.enqueue_many([self._job_data(b) for b in chunk], pipeline=pipe)
            pipe.execute()
        self._backlog += len(files)
        log.debug("queued %d files of zone %s in %d jobs", len(files), zone.name, len(batches))
        return len(files)

    def _job_data(self, b: Batch) -> Any:
        return Queue.prepare_data(
            TASK_FUNC, args=(b.to_record(),), job_id=b.id, timeout=int(self.cfg.job_timeout),
            result_ttl=RESULT_TTL, failure_ttl=FAILURE_TTL, retry=Retry(max=JOB_RETRIES),
            description=f"ingest {len(b.files)} files ({b.bytes} bytes) of zone {b.zone.name}",
        )

    def reap(self) -> int:
        """Repair after dead workers and failed jobs; returns the number of files marked failed.

        Jobs whose worker stopped sending heartbeats are retried (RQ's started-registry cleanup, run
        here too so it does not wait for a worker's maintenance); a job that failed all its retries has
        the files it still held queued recorded as failed in the ledger, with the job's error, so that
        `status` lists them and `retry` can queue them again. The job then leaves RQ's failed registry.
        """
        StartedJobRegistry(queue=self.queue).cleanup()
        failed = FailedJobRegistry(queue=self.queue)
        marked = 0
        for job_id in failed.get_job_ids(0, 499):
            try:
                job = Job.fetch(job_id, connection=self.r)
            except NoSuchJobError:
                failed.remove(job_id)
                continue
            try:
                batch = Batch.from_record(job.args[0])
            except (ValueError, KeyError, IndexError, TypeError):
                log.error("job %s in the failed registry is not an ingest job of this version; removed "
                          "(its files are found again by the walks)", job_id)
                failed.remove(job_id)
                continue
            result = job.latest_result()
            reason = _last_line(result.exc_string if result else None) or "the job failed (worker died or raised)"
            for f in batch.files:
                if self.ledger.mark_failed(batch.zone.name, f.rel, f.size, f.mtime_ns,
                                           f"job failed {JOB_RETRIES + 1} times: {reason}", kind="job",
                                           only_queued=True):
                    marked += 1
            failed.remove(job, delete_job=True)
            log.error("job %s of zone %s failed for good: %s; %d of its %d files recorded as failed",
                      job_id, batch.zone.name, reason, marked, len(batch.files))
        return marked


def _last_line(text: str | None) -> str:
    lines = [x for x in (text or "").strip().splitlines() if x.strip()]
    return lines[-1].strip()[:500] if lines else ""
