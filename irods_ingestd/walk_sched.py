"""Walk jobs, the daemon's side: a zone's full walk run as directory-chunk jobs on the walk queue.

With `[walk] jobs = true` and at least one worker listening on `[walk].queue` (`irods-ingestd worker --role
walk`, on any host that sees the zone's file system), a full walk of a zone is not listed by the daemon: it
becomes chunks of at most `chunk` directories, each an RQ job (walkjobs.py) that lists its directories,
compares them with the ledger and commits its result to the walk's results list in Redis. The daemon only
schedules: it drains the results (the files go to the zone's settle policy exactly as its own walk's do),
makes the subdirectories a result names new chunks (breadth-first; a zone with a complete watcher watches
each directory before a chunk holding it is queued, so nothing falls between the listing and the watch),
and knows the walk is complete when no chunk is outstanding and no result waits (both counted in Redis:
`keys.walk_chunks_key`, `keys.walk_results_key`). Only then is the walk complete for the zone (events
trusted again, the next walk timed), as a walk of its own.

A chunk whose job will never commit (its worker was killed: RQ's started-registry cleanup fails it once its
heartbeat stops; it failed; it ran past `chunk_timeout`) is assigned to a new job, compare-and-set, so the
old job's late commit is refused; after `retries` such losses the chunk is given up, logged with its
directories, and the walk ends incomplete (it does not count as a complete walk; the next walk is timed).
Without walk workers the daemon walks by itself, as before; when every walk worker died during a walk
(none alive for `chunk_timeout`) it walks the zone itself, anew; and when Redis says no chunk is outstanding
while the daemon scheduled more than it took back (the walk's keys were lost), the zone is walked again.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
from rq import Queue, Worker
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry

from . import keys, walkjobs
from .config_walk import WalkConfig
from .reconcile import Found, Walk
from .zone import Zone, ZoneSink, printable

log = logging.getLogger("irods_ingestd.daemon")

CHECK_EVERY = 5.0  # seconds between looks for lost chunks
WORKERS_MAX_AGE = 5.0  # seconds the count of walk workers is cached
RESULTS_A_READ = 20
OUTSTANDING_PER_WORKER = 4  # chunks queued or running a walk worker, at most
ENDED = {JobStatus.FINISHED, JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED}

# KEYS: the chunks hash. ARGV: chunk id, the value it must have, the new value ("" to drop the chunk).
_REASSIGN_LUA = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
if ARGV[3] == '' then redis.call('HDEL', KEYS[1], ARGV[1]) else redis.call('HSET', KEYS[1], ARGV[1], ARGV[3]) end
return 1
"""


@dataclass
class JobWalk:
    """A walk of one zone in progress as jobs."""

    id: str
    walk: Walk
    next_chunk: int = 0
    next_check: float = 0.0
    given_up: list[str] = field(default_factory=list)  # directories whose chunk was lost `retries` times
    hosts: set[str] = field(default_factory=set)  # the hosts whose walk workers committed results
    redone: int = 0  # chunks given to a new job after theirs was lost
    chunks: int = 0  # results taken
    outstanding: int = 0  # chunks scheduled and neither taken back nor given up (Redis' count must agree)
    no_workers_since: float | None = None  # no walk worker alive since
    waiting: deque[list[str]] = field(default_factory=deque)  # directories to schedule, by result, oldest first
    job_seconds: float = 0.0  # the time the jobs spent listing and comparing, summed


class WalkJobs:
    def __init__(self, r: redis.Redis, prefix: str, cfg: WalkConfig) -> None:
        self.r = r
        self.p = prefix
        self.cfg = cfg
        self.queue = Queue(cfg.queue, connection=r)
        self.runs: dict[str, JobWalk] = {}
        self.finished: dict[str, JobWalk] = {}  # each zone's last walk run as jobs (status, tests)
        self._workers = (0, -math.inf)
        self._said_alone: set[str] = set()

    def workers(self) -> int:
        """Workers alive listening on the walk queue (cached a few seconds; a killed worker drops out when
        its registration expires)."""
        n, at = self._workers
        now = time.monotonic()
        if now - at > WORKERS_MAX_AGE:
            n = len(Worker.all(queue=self.queue))
            self._workers = (n, now)
        return n

    def runs_as_jobs(self, zs: Zone) -> bool:
        """This zone's walk in progress is (or now becomes) a walk of jobs."""
        walk = zs.walk
        if walk is None:
            return False
        run = self.runs.get(zs.name)
        if run is not None and run.walk is walk:
            return True
        if not (self.cfg.jobs and walk.full and walk.dirs == 0 and zs.state != "lost"):
            return False
        if self.workers() == 0:
            if zs.name not in self._said_alone:
                self._said_alone.add(zs.name)
                log.info("zone %s: no walk worker listens on queue %s; the daemon walks the zone itself",
                         zs.name, self.cfg.queue, extra={"fields": {"INGEST_ZONE": zs.name}})
            return False
        self._said_alone.discard(zs.name)
        self._start(zs, walk)
        return True

    def _start(self, zs: Zone, walk: Walk) -> None:
        run = JobWalk(id=uuid.uuid4().hex[:12], walk=walk, next_check=time.monotonic() + CHECK_EVERY)
        walk.jobs = run.id
        self.runs[zs.name] = run
        log.info("zone %s: walk %s runs as jobs on queue %s (%d walk workers)", zs.name, run.id, self.cfg.queue,
                 self.workers(), extra={"fields": {"INGEST_ZONE": zs.name}})
        self._schedule_waiting(zs, run)

    def sweep(self, zones: Mapping[str, Zone]) -> None:
        """Forget the job walks whose zone is gone or walks anew (lost, rewalked): their chunks' jobs find
        nothing to do."""
        for name, run in list(self.runs.items()):
            zs = zones.get(name)
            if zs is None or zs.walk is not run.walk:
                self._drop(name, run)

    def _drop(self, name: str, run: JobWalk) -> None:
        self.runs.pop(name, None)
        self.r.delete(keys.walk_chunks_key(self.p, name, run.id), keys.walk_results_key(self.p, name, run.id))

    # -- scheduling ---------------------------------------------------------------------------------------
    def _schedule_waiting(self, zs: Zone, run: JobWalk) -> None:
        """Make chunks of the directories waiting (a result's subdirectories and unlisted rest; those made
        while the walk runs, which the watcher put on the walk's stack), oldest first, while fewer than
        OUTSTANDING_PER_WORKER chunks a worker are outstanding: enough to keep the workers busy, and it
        bounds what waits in Redis when the daemon cannot drain (its ready list full) to about that many
        chunks' results."""
        walk = run.walk
        if walk.stack:
            run.waiting.append(walk.stack)
            walk.stack = []
        workers = max(1, self.workers())
        while run.waiting and run.outstanding < OUTSTANDING_PER_WORKER * workers:
            group = run.waiting.popleft()  # a result's subdirectories: split so each worker gets a share
            self._schedule(zs, run, group, min(self.cfg.chunk, max(1, math.ceil(len(group) / (2 * workers)))))

    def _schedule(self, zs: Zone, run: JobWalk, dirs: Sequence[str], size: int) -> None:
        """Make directories chunks of `size` (each watched first if the zone's watcher needs it)."""
        hook = zs.watch_hook()
        if hook is not None:
            for d in dirs:
                hook(d)
        chunks_key = keys.walk_chunks_key(self.p, zs.name, run.id)
        datas: list[Any] = []
        values: dict[str | bytes, bytes | float | int | str] = {}
        for i in range(0, len(dirs), size):
            cid = str(run.next_chunk)
            run.next_chunk += 1
            value, data = self._assignment(zs, run, cid, list(dirs[i:i + size]), 0)
            values[cid] = value
            datas.append(data)
        try:
            with self.r.pipeline() as pipe:
                pipe.hset(chunks_key, mapping=values)
                pipe.expire(chunks_key, walkjobs.RESULTS_TTL)
                self.queue.enqueue_many(datas, pipeline=pipe)
                pipe.execute()
            run.outstanding += len(values)
        except redis.RedisError as e:  # kept on the walk's stack: scheduled by the next step (which raises)
            log.debug("zone %s: walk %s: %d directories not scheduled yet: %s", zs.name, run.id, len(dirs), e)
            run.walk.stack.extend(dirs)

    def _assignment(self, zs: Zone, run: JobWalk, cid: str, dirs: list[str], tries: int) -> tuple[str, Any]:
        job_id = f"walk-{zs.name}-{run.id}-{cid}-{tries}"
        value = json.dumps({"job": job_id, "try": tries, "dirs": dirs})
        ch = walkjobs.Chunk(zone=zs.name, root=zs.root, follow=zs.follow, prefix=self.p, walk=run.id, chunk=cid,
                            dirs=tuple(dirs), max_files=self.cfg.chunk_files, assigned=value)
        data = Queue.prepare_data(walkjobs.FUNC, args=(ch.to_record(),), job_id=job_id,
                                  timeout=int(self.cfg.chunk_timeout), result_ttl=60, failure_ttl=3600,
                                  description=f"walk {len(dirs)} directories of zone {zs.name}")
        return value, data

    # -- the walk's progress ----------------------------------------------------------------------------
    def step(self, zs: Zone, sink: ZoneSink, budget: float) -> None:
        """Take the results committed so far (for about `budget` seconds), schedule what they found, look
        for lost chunks now and then, and end the walk when nothing is outstanding. Redis errors propagate."""
        run = self.runs[zs.name]
        walk = run.walk
        self._schedule_waiting(zs, run)
        results_key = keys.walk_results_key(self.p, zs.name, run.id)
        deadline = time.monotonic() + budget
        took = False
        while True:
            raws = self.r.lpop(results_key, RESULTS_A_READ)
            if not raws and not took:
                got = self.r.blpop([results_key], timeout=max(0.01, budget))
                raws = [got[1]] if got else None
            if not raws:
                break
            took = True
            for raw in raws:
                self._take(zs, run, json.loads(raw), sink)
            if time.monotonic() >= deadline:
                break
        if zs.walk is not walk:  # the zone was lost meanwhile
            self._drop(zs.name, run)
            return
        self._schedule_waiting(zs, run)
        if not os.path.isdir(zs.root):
            self._drop(zs.name, run)
            zs.lose(f"{zs.root} disappeared", sink)
            return
        now = time.monotonic()
        if now >= run.next_check:
            run.next_check = now + CHECK_EVERY
            if self._abandoned(zs, run, now):
                return
            self._repair(zs, run)
        if walk.stack or run.waiting:
            return
        with self.r.pipeline() as pipe:
            pipe.hlen(keys.walk_chunks_key(self.p, zs.name, run.id))
            pipe.llen(results_key)
            chunks, results = pipe.execute()
        if chunks or results:
            return
        if run.outstanding > 0:  # Redis says done, we know better: its keys were lost (Redis lost its data?)
            log.warning("zone %s: walk %s lost its chunks in Redis (%d outstanding): walking the zone again",
                        zs.name, run.id, run.outstanding, extra={"fields": {"INGEST_ZONE": zs.name}})
            self._drop(zs.name, run)
            zs.rewalk()
            return
        self._finish(zs, run)

    def _abandoned(self, zs: Zone, run: JobWalk, now: float) -> bool:
        """No walk worker has been alive for `chunk_timeout`: the daemon walks the zone itself, anew (the
        walk's queued jobs, should workers come back, find their chunks gone and do nothing)."""
        if self.workers() > 0:
            run.no_workers_since = None
            return False
        if run.no_workers_since is None:
            run.no_workers_since = now
        if now - run.no_workers_since < self.cfg.chunk_timeout:
            return False
        log.warning("zone %s: walk %s: no walk worker for %.0fs; the daemon walks the zone itself", zs.name,
                    run.id, now - run.no_workers_since, extra={"fields": {"INGEST_ZONE": zs.name}})
        self._drop(zs.name, run)
        zs.rewalk()
        return True

    def _take(self, zs: Zone, run: JobWalk, res: dict[str, Any], sink: ZoneSink) -> None:
        walk = run.walk
        walk.dirs += res["dirs"]
        walk.files += res["files"]
        walk.new += res["new"]
        walk.lost += res["lost"]
        run.hosts.add(res.get("host", "?"))
        run.chunks += 1
        run.outstanding -= 1
        run.job_seconds += res.get("seconds", 0.0)
        zs.take_found([Found(rel, size, mtime) for rel, size, mtime in res["found"]], sink)
        for rel, reason in res["skipped"]:
            sink.report_skip(zs.name, rel, reason)
        for group in (res["rest"], res["subdirs"]):  # (the rest is watched again when scheduled: harmless)
            if group:
                run.waiting.append(group)

    def _repair(self, zs: Zone, run: JobWalk) -> None:
        """Give the chunks whose job will never commit to a new job (or give them up after `retries`)."""
        StartedJobRegistry(queue=self.queue).cleanup()  # jobs of killed workers: failed once their heartbeat ends
        chunks_key = keys.walk_chunks_key(self.p, zs.name, run.id)
        entries = {k.decode(): v.decode() for k, v in self.r.hgetall(chunks_key).items()}
        if not entries:
            return
        parsed = {cid: json.loads(v) for cid, v in entries.items()}
        jobs = Job.fetch_many([a["job"] for a in parsed.values()], connection=self.r)
        for (cid, a), job in zip(parsed.items(), jobs, strict=True):
            if job is not None and job.get_status(refresh=False) not in ENDED:
                continue
            why = "its job is gone" if job is None else f"its job {job.id} ended {job.get_status(refresh=False).value}"
            if a["try"] >= self.cfg.retries:
                if self.r.eval(_REASSIGN_LUA, 1, chunks_key, cid, entries[cid], ""):
                    run.outstanding -= 1
                    run.given_up.extend(a["dirs"])
                    log.error("zone %s: walk %s gives up %d directories (%s, ...): %s, %d times", zs.name, run.id,
                              len(a["dirs"]), printable(a["dirs"][0] or "."), why, a["try"] + 1,
                              extra={"fields": {"INGEST_ZONE": zs.name}})
                continue
            value, data = self._assignment(zs, run, cid, a["dirs"], a["try"] + 1)
            if self.r.eval(_REASSIGN_LUA, 1, chunks_key, cid, entries[cid], value):
                run.redone += 1
                log.warning("zone %s: walk %s: chunk %s (%d directories) again: %s", zs.name, run.id, cid,
                            len(a["dirs"]), why, extra={"fields": {"INGEST_ZONE": zs.name}})
                self.queue.enqueue_many([data])

    def _finish(self, zs: Zone, run: JobWalk) -> None:
        self._drop(zs.name, run)
        self.finished[zs.name] = run
        walk = run.walk
        log.info("zone %s: walk %s done by walk workers on %s", zs.name, run.id, ", ".join(sorted(run.hosts)) or "-",
                 extra={"fields": {"INGEST_ZONE": zs.name}})
        if run.given_up:
            log.error("zone %s: walk %s is incomplete: %d directories were not listed (their jobs were lost "
                      "%d times); the next walk tries again", zs.name, run.id, len(run.given_up), self.cfg.retries + 1,
                      extra={"fields": {"INGEST_ZONE": zs.name}})
            walk.full = False  # not a complete walk: events are not trusted on its word
            zs.next_walk = time.monotonic() + zs.walk_interval()
        zs.finish_walk(walk)
