"""The daemon's feeding of the queue: ready files to the enqueuer in batches, recently queued files
looked at again, the ledger's counters recounted; housekeeping every second (the zones renewed, lost
jobs reaped, deferred after-actions queued, files handed back settled again).

A mixin of `Daemon` (kept apart to keep each module small; see `Daemon` for the attributes it sets up).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

import redis

from . import after_jobs, metrics, names, notify
from .completion import gate as completion_gate
from .completion import jobs as completion_jobs
from .config import Config
from .daemon_owner import Owning
from .daemon_zones import Counters
from .job import FileItem, ZoneSpec
from .ledger import Ledger
from .queue import Enqueuer
from .recent import RecentlyQueued
from .redishealth import RedisHealth
from .settler import Ready, Settler
from .zone import Zone, printable

log = logging.getLogger("irods_ingestd.daemon")

HOLD_MAX = 0.1  # seconds a ready file may be held to fill a batch while every worker is busy
RENEW_BEFORE_QUEUEING = 5.0  # seconds since the zones were last renewed after which queueing checks first


class Feeding(Owning):
    """Ready files to the enqueuer, recently queued files and recounts, housekeeping."""

    cfg: Config
    once: bool
    zones: dict[str, Zone]
    settler: Settler
    recent: RecentlyQueued
    ready: list[Ready]
    enqueuer: Enqueuer
    health: RedisHealth
    counters: Counters
    r: redis.Redis
    ledger: Ledger
    _next_reap: float
    _hang_file: str | None
    _backlog_full: bool
    _ready_since: float | None
    report_skip: Callable[[str, str, str], None]  # ZoneWork's

    def _recheck_recent(self) -> None:
        """Files queued recently that changed since (a writer that paused, then wrote on): settle again."""
        for zone, rel, size, mtime in self.recent.changed():
            zs = self.zones.get(zone)
            if zs is not None and not zs.names.reason_to_skip(rel.rpartition("/")[2], rel):
                log.info("zone %s: %s changed after it was queued; it will be queued again when it settles",
                         zone, printable(rel), extra={"fields": {"INGEST_ZONE": zone, "INGEST_PATH": printable(rel)}})
                self.settler.observe(zone, rel, size, mtime, zs.cfg.settle)

    def _recount_step(self) -> None:
        if not self.recounts or self.health.down_since is not None:
            return
        rc = self.recounts[0]
        try:
            if not rc.run(budget=0.02):
                return
        except redis.RedisError as e:
            self.health.error(e)
            return
        self.recounts.pop(0)
        for zone, (before, after) in rc.result.items():
            level = logging.WARNING if before != after else logging.INFO
            log.log(level, "zone %s: queued counter recounted from the ledger: %d (it said %d)", zone, after,
                    before, extra={"fields": {"INGEST_ZONE": zone}})

    def _through_gates(self) -> None:
        """Marker/manifest zones: settled files wait for their directory to be complete (completion/gate.py)."""
        if self.health.down() or not self._owned:
            return
        self.ready, error = completion_gate.through(self.zones, self.ready, self.r, self.ledger.prefix, self.ledger,
                                                    self.report_skip)
        if error is not None:
            self.health.error(error)

    def _flush(self) -> None:
        self._through_gates()
        if not self.ready or self.health.down():
            return
        try:
            if self._hold_for_batch():
                return
            if self.owner is not None and time.monotonic() - self._renewed > RENEW_BEFORE_QUEUEING:
                self._keep_zones()  # e.g. after a pause (SIGSTOP, a frozen VM): are the zones still ours?
                if not self._owned:
                    return
            room = self.enqueuer.room()
            self._backlog_full = room < len(self.ready)
            if room <= 0:
                return
            take, self.ready = self.ready[:room], self.ready[room:]
            by_zone: dict[str, list[FileItem]] = {}
            for x in take:
                by_zone.setdefault(x.zone, []).append(FileItem(x.rel, x.size, x.mtime_ns, x.expect, x.unit))
            for zone, files in by_zone.items():
                zs = self.zones.get(zone)
                if zs is None:
                    continue
                try:
                    sent = self.enqueuer.enqueue_files(zs.spec, files)
                except redis.RedisError:
                    self.ready.extend(Ready(zone, f.rel, f.size, f.mtime_ns, f.expect, f.unit) for f in files)
                    raise
                self.counters.sent += len(sent)
                metrics.files_queued(zone, sent)
                for f in sent:
                    self.recent.add(zone, f.rel, f.size, f.mtime_ns, zs.cfg.settle / 2)
        except redis.WatchError as e:  # the ledger kept changing under these files: offered again next turn
            log.warning("%s", e)
        except redis.RedisError as e:
            self.health.error(e)

    def backlog_full(self) -> bool:
        """Ready files wait because the backlog (files queued, max_backlog) is full."""
        return self._backlog_full and bool(self.ready)

    def _hold_for_batch(self) -> bool:
        """While jobs are already waiting for a worker, a few ready files are held (at most HOLD_MAX
        seconds, or until a batch is full) to make fewer, larger jobs: a file would wait in the queue
        anyway, and RQ's cost per job is what saturated workers have least time for. With idle workers
        nothing is held."""
        now = time.monotonic()
        if self._ready_since is None:
            self._ready_since = now
        if self.once or len(self.ready) >= self.cfg.queue.batch_files or now - self._ready_since >= HOLD_MAX:
            self._ready_since = None
            return False
        if self.enqueuer.waiting_jobs() == 0:
            self._ready_since = None
            return False
        return True

    def _job_file_failed(self, zone: ZoneSpec, f: FileItem, reason: str) -> None:
        """A file of a job that failed for good (the reaper): the zone's webhook, as for a worker's failure."""
        try:
            obj = names.target_for(zone.collection, f.rel).path
        except names.BadName:
            obj = ""
        notify.file_failed(notify.of(self.cfg, zone.name), zone.name, f"{zone.root.rstrip('/')}/{printable(f.rel)}",
                           obj, reason, "job", f.size, f.mtime_ns)

    def _housekeeping(self) -> None:
        if self.health.down():
            return
        try:
            self.health.check_epoch()
            self._keep_zones()
            if time.monotonic() >= self._next_reap and not self.once and self._owned:
                self._next_reap = time.monotonic() + 5.0
                self.enqueuer.reap(self._job_file_failed)
                after_jobs.enqueue_due(self.r, self.ledger.prefix, self.enqueuer.queue,
                                       [zs.spec for zs in self.zones.values()])
                completion_jobs.enqueue_due(self.r, self.ledger.prefix, self.enqueuer.queue,
                                            [zs.spec for zs in self.zones.values()])
            for zs in self.zones.values() if self._owned else ():
                for rel in self.ledger.pop_resettle(zs.cfg.name):
                    st = zs.stat(rel)
                    if isinstance(st, tuple):
                        self.settler.observe(zs.cfg.name, rel, st[0], st[1], zs.cfg.settle)
        except redis.RedisError as e:
            self.health.error(e)
        except Exception:  # noqa: BLE001 - housekeeping must never stop the daemon; the next turn tries again
            log.exception("housekeeping failed; trying again in a moment")
        if self._hang_file and os.path.exists(self._hang_file):
            log.warning("%s exists: hanging the main loop (test of the watchdog)", self._hang_file)
            while os.path.exists(self._hang_file):
                time.sleep(1.0)
