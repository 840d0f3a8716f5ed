"""The daemon's zones: adding and removing them, scheduling their walks, routing their changes.

A mixin of `Daemon` (kept apart to keep each module small). Each `Zone` (zone.py) owns its watcher, walk,
trust state and settle policy; the daemon is the `ZoneSink` its findings go to: the settler, the ready
list, and the skipped files reported once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

import redis

from .config import Config, ZoneConfig
from .daemonlock import ZoneOwnership, ZoneTaken
from .messages import MessageId
from .queue import Enqueuer
from .recent import RecentlyQueued
from .reconcile import Reconciler
from .redishealth import RedisHealth
from .settler import Ready, Settler
from .walk_sched import WalkJobs
from .watch.api import Change, Kind
from .watch.select import Backends
from .zone import Zone, printable

log = logging.getLogger("irods_ingestd.daemon")

READY_MAX = 20_000  # walks pause while this many settled files wait for room


@dataclass
class Counters:
    sent: int = 0  # files handed to the queue since start
    skipped: int = 0
    overflows: int = 0


class ZoneWork:
    """Zones, walks and events of the daemon (see `Daemon` for the attributes it sets up)."""

    cfg: Config
    zones: dict[str, Zone]
    settler: Settler
    recent: RecentlyQueued
    ready: list[Ready]
    reconciler: Reconciler
    enqueuer: Enqueuer
    health: RedisHealth
    watchers: Backends
    _reported: dict[tuple[str, str], str]
    counters: Counters
    r: redis.Redis
    owner: ZoneOwnership | None
    walk_jobs: WalkJobs | None = None
    _ready_keys: set[tuple[str, str, int, int]] | None = None  # during a walk step: the ready list's versions
    _in_walk_step = False

    def add_zone(self, z: ZoneConfig) -> None:
        zs = Zone(cfg=z, watcher=self.watchers.for_zone(z))
        self.zones[z.name] = zs
        if zs.on_close:  # complete_when = "close": a file still open for writing is never ready
            self.settler.open_for_writing = self._open_for_writing
        self.enqueuer.zones.add(z.name)
        zs.begin(self)

    def remove_zone(self, name: str) -> None:
        self.zones.pop(name).end()
        self.settler.discard(name)
        self.recent.discard(name)
        self.ready = [x for x in self.ready if x.zone != name]

    def _walk_all(self) -> None:
        for zs in self.zones.values():
            zs.rewalk()

    def _walk_zones(self, now: float) -> None:
        """Start the walks that are due and take a step of each walk in progress."""
        if self.walk_jobs is not None:
            self.walk_jobs.sweep(self.zones)
        for zs in list(self.zones.values()):
            zs.check_root(self, now)
            if zs.due(now):
                zs.start_walk([z.cfg for z in self.zones.values()], self._claim_zone)
            if zs.walk is not None and len(self.ready) < READY_MAX:
                self._walk_step(zs, budget=0.05)

    def _claim_zone(self, z: ZoneConfig) -> str | None:
        """A zone directory back (or appearing) after start: is it, really, inside another daemon's zone
        now (daemonclaims)? The reason it may not be walked, or None."""
        if self.owner is None:
            return None  # scan: compared at its start
        try:
            self.owner.claim([z.name])
        except ZoneTaken as e:
            return str(e)
        except redis.RedisError as e:
            return f"Redis does not answer, so the daemons' zones cannot be compared: {e}"
        return None

    def _walk_step(self, zs: Zone, budget: float) -> None:
        self._in_walk_step = True  # nothing but ready_file changes the ready list meanwhile
        try:
            jobs = self._walk_jobs()
            if jobs.runs_as_jobs(zs):  # listed by walk workers ([walk] jobs, walk_sched.py)
                jobs.step(zs, self, budget)
            else:
                zs.walk_step(self.reconciler, self, budget)
        except redis.RedisError as e:
            self.health.error(e)
        finally:
            self._in_walk_step, self._ready_keys = False, None

    def _walk_jobs(self) -> WalkJobs:
        if self.walk_jobs is None or (self.walk_jobs.cfg != self.cfg.walk and not self.walk_jobs.runs):
            self.walk_jobs = WalkJobs(self.r, self.cfg.redis.prefix, self.cfg.walk)
        return self.walk_jobs

    def _on_changes(self) -> None:
        for ch in self.watchers.changes():
            self._on_change(ch)

    def _on_change(self, ch: Change) -> None:
        if ch.kind is Kind.OVERFLOW:
            self.counters.overflows += 1
            log.warning("watcher events were lost (%s): walking every watched zone", ch.detail,
                        extra={"message_id": MessageId.EVENT_OVERFLOW})
            for zs in self.zones.values():
                if zs.watcher.complete and zs.state != "lost":
                    zs.untrust("events were lost (queue overflow)")
            return
        found = self.zones.get(ch.zone or "")
        if found is not None:
            found.on_change(ch, self)

    # -- ZoneSink: where zones' findings go -----------------------------------------------------------------
    def observe(self, zone: str, rel: str, size: int, mtime_ns: int, settle: float) -> None:
        self.settler.observe(zone, rel, size, mtime_ns, settle)

    def touch(self, zone: str, rel: str) -> bool:
        return self.settler.touch(zone, rel)

    def is_settling(self, zone: str, rel: str) -> bool:
        return self.settler.is_settling(zone, rel)

    def closed(self, zone: str, rel: str, size: int, mtime_ns: int, settle: float, close_settle: float) -> None:
        self.settler.closed(zone, rel, size, mtime_ns, settle, close_settle)

    def _open_for_writing(self, zone: str, rel: str) -> bool:
        zs = self.zones.get(zone)
        return zs is not None and zs.on_close and zs.open_for_writing(rel)

    def discard(self, zone: str, rel: str | None = None) -> None:
        self.settler.discard(zone, rel)
        zs = self.zones.get(zone)
        if zs is not None and zs.gate is not None:
            zs.gate.discard(rel)

    def ready_file(self, zone: str, rel: str, size: int, mtime_ns: int) -> None:
        self._add_ready([Ready(zone, rel, size, mtime_ns)])

    def _add_ready(self, items: Iterable[Ready]) -> None:
        """Settled files to the ready list, each version once: while the backlog is full, every rescan (and
        an event on a waiting file) finds the files still waiting again; the list grew by all of them each
        time, and `status` counted them twice."""
        items = list(items)
        if not items:
            return
        seen = self._ready_keys
        if seen is None:
            seen = {(x.zone, x.rel, x.size, x.mtime_ns) for x in self.ready}
            if self._in_walk_step:
                self._ready_keys = seen  # kept for the step's next files
        for x in items:
            key = (x.zone, x.rel, x.size, x.mtime_ns)
            if key not in seen:
                seen.add(key)
                self.ready.append(x)

    def report_skip(self, zone: str, rel: str, reason: str) -> None:
        if self._reported.get((zone, rel)) == reason:
            return
        if len(self._reported) > 100_000:
            self._reported.clear()
        self._reported[(zone, rel)] = reason
        self.counters.skipped += 1
        log.warning("zone %s: skipping %s: %s", zone, printable(rel), reason,
                    extra={"message_id": MessageId.FILE_SKIPPED,
                           "fields": {"INGEST_ZONE": zone, "INGEST_PATH": printable(rel),
                                      "INGEST_RESULT": f"skipped: {reason}"}})

    def _stat(self, zone: str, rel: str) -> tuple[int, int] | str | None:
        zs = self.zones.get(zone)
        return None if zs is None else zs.stat(rel)

    def _report_settler_skips(self) -> None:
        while self.settler.skipped:
            zone, rel, reason = self.settler.skipped.pop()
            self.report_skip(zone, rel, reason)
