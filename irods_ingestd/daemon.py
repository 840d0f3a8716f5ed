"""The daemon's main loop: watch/walk → settle → queue.

One thread does all the work here; the inotify backend has its own reader thread that only drains the
kernel's queue. Each turn of the loop: take the changes the watcher collected, list a few directories
of any walk in progress, take the files the settler says are ready, and queue them in batches. Redis
being down is logged and waited out: files keep settling in memory and nothing is lost, since a file
not in the ledger is found again by the next walk.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from . import __version__, after_jobs, names
from .config import Config, ConfigError, ZoneConfig, load
from .filters import NameFilter
from .job import FileItem, ZoneSpec
from .ledger import Ledger
from .messages import MessageId
from .queue import Enqueuer
from .reconcile import Reconciler, Walk
from .redisconn import connect
from .sdnotify import Notifier
from .settler import Ready, Settler
from .walker import Listing, stat_file
from .watch.api import Change, Inbox, Kind, Watcher
from .watch.inotify import InotifyWatcher
from .watch.poll import PollWatcher

log = logging.getLogger(__name__)

HANG_ENV = "INGESTD_TEST_HANG_FILE"  # tests: while this file exists the main loop hangs (watchdog test)
STATUS_TTL = 30
HOLD_MAX = 0.1  # seconds a ready file may be held to fill a batch while every worker is busy


@dataclass
class ZoneState:
    cfg: ZoneConfig
    spec: ZoneSpec
    names: NameFilter
    watcher: Watcher
    inotify: bool
    state: str = "starting"  # watching | walking | polling | lost
    walk: Walk | None = None
    next_walk: float = 0.0
    walks_done: int = 0
    last_walk_seconds: float = 0.0
    trust_events: bool = True
    lost_reason: str = ""

    @property
    def root(self) -> str:
        return str(self.cfg.path)

    def walk_interval(self) -> float:
        if self.inotify and self.trust_events:
            return self.cfg.rescan
        return min(self.cfg.poll_interval, self.cfg.rescan)


@dataclass
class Counters:
    queued: int = 0
    skipped: int = 0
    overflows: int = 0
    redis_errors: int = 0


class Daemon:
    def __init__(self, cfg: Config, r: redis.Redis | None = None, notifier: Notifier | None = None,
                 once: bool = False) -> None:
        self.cfg = cfg
        self.r = r if r is not None else connect(cfg.redis)
        self.ledger = Ledger(self.r, cfg.redis.prefix)
        self.enqueuer = Enqueuer(self.r, self.ledger, cfg.queue)
        self.reconciler = Reconciler(self.ledger, stale_queued=4 * cfg.queue.job_timeout + 3600)
        self.settler = Settler(self._stat)
        self.notifier = notifier or Notifier()
        self.once = once  # `scan`: one walk of each zone, wait for what settles, queue, exit
        self.inbox = Inbox()
        self._inotify: InotifyWatcher | None = None
        self._poll = PollWatcher()
        self.zones: dict[str, ZoneState] = {}
        self.ready: list[Ready] = []
        self.counters = Counters()
        self._reported: dict[tuple[str, str], str] = {}  # skipped files reported once
        self._stop = False
        self._reload = False
        self._redis_down_since: float | None = None
        self._next_status = 0.0
        self._next_housekeeping = 0.0
        self._next_reap = 0.0
        self._backlog_full = False
        self._ready_since: float | None = None
        self._next_watchdog = 0.0
        self._epoch: bytes | None = None
        self._hang_file = os.environ.get(HANG_ENV)
        self.host = socket.gethostname()
        self.started = time.time()

    # -- zones ------------------------------------------------------------------------------------------
    def _watcher_for(self, z: ZoneConfig) -> tuple[Watcher, bool]:
        if z.watcher == "inotify" and not self.once:
            if self._inotify is None:
                try:
                    self._inotify = InotifyWatcher(self.inbox)
                except OSError as e:
                    log.error("inotify is not available (%s): zone %s will be polled", e, z.name)
                    return self._poll, False
            return self._inotify, True
        return self._poll, False

    def add_zone(self, z: ZoneConfig) -> None:
        watcher, inotify = self._watcher_for(z)
        zs = ZoneState(cfg=z, spec=ZoneSpec.from_config(z), names=NameFilter.for_zone(z), watcher=watcher,
                       inotify=inotify)
        self.zones[z.name] = zs
        self.enqueuer.zones.add(z.name)
        watcher.add_zone(z)
        if not os.path.isdir(z.path):
            self._lose(zs, f"{z.path} is not a directory (missing or unmounted?)")
            return
        zs.state = "watching" if inotify else "polling"
        zs.walk = Walk()  # the first walk also places the watches
        log.info("zone %s: %s %s → %s (%s, settle %gs)", z.name, "watching" if inotify else "polling",
                 z.path, z.collection, z.mode, z.settle, extra={"fields": {"INGEST_ZONE": z.name}})

    def remove_zone(self, name: str) -> None:
        zs = self.zones.pop(name)
        zs.watcher.remove_zone(name)
        self.settler.discard(name)
        self.ready = [x for x in self.ready if x.zone != name]

    def _lose(self, zs: ZoneState, reason: str) -> None:
        if zs.state != "lost":
            log.error("zone %s: %s; checking again every few seconds", zs.cfg.name, reason,
                      extra={"message_id": MessageId.ZONE_WALKING,
                             "fields": {"INGEST_ZONE": zs.cfg.name, "INGEST_RESULT": "zone lost"}})
        zs.state, zs.lost_reason, zs.walk = "lost", reason, None
        zs.watcher.remove_zone(zs.cfg.name)
        self.settler.discard(zs.cfg.name)
        zs.next_walk = time.monotonic() + 5.0

    def _untrust(self, zs: ZoneState, why: str) -> None:
        """Events can no longer be trusted: walk the whole zone now, and on a short timer until trusted."""
        if zs.state == "watching":
            log.warning("zone %s: %s; walking the zone to find what was missed", zs.cfg.name, why,
                        extra={"message_id": MessageId.ZONE_WALKING,
                               "fields": {"INGEST_ZONE": zs.cfg.name, "INGEST_RESULT": why}})
        zs.state = "walking"
        zs.next_walk = min(zs.next_walk, time.monotonic() + zs.walk_interval())
        if zs.walk is None or not zs.walk.full:
            zs.walk = Walk()

    # -- the loop ---------------------------------------------------------------------------------------
    def start(self) -> None:
        for z in self.cfg.zones:
            self.add_zone(z)
        self._check_epoch()

    def run(self) -> int:
        self.install_signals()
        self.start()
        # READY only after the first watches are in place: the root watches now, the rest as walked
        for zs in self.zones.values():
            if zs.inotify and zs.state == "watching":
                self._walk_step(zs, budget=0.0)
        self.notifier.ready(self.status_line())
        log.info("irods-ingestd %s running with %d zones", __version__, len(self.zones),
                 extra={"message_id": MessageId.DAEMON_STARTED})
        while not self._stop:
            if self._reload:
                self._reload = False
                self.reload()
            self.turn()
            if self.once and self._idle():
                break
        self.notifier.stopping()
        log.info("irods-ingestd stopping", extra={"message_id": MessageId.DAEMON_STOPPING})
        self._flush()
        self.close()
        return 0

    def _idle(self) -> bool:
        return all(zs.walk is None for zs in self.zones.values()) and not len(self.settler) and not self.ready

    def turn(self, max_wait: float = 1.0) -> None:
        """One turn of the main loop (tests drive the daemon with this)."""
        now = time.monotonic()
        wait = max_wait
        if any(zs.walk for zs in self.zones.values()):
            wait = 0.0
        elif self.ready:
            wait = 0.0 if self._ready_since is None else min(wait, 0.01)
        nd = self.settler.next_deadline()
        if nd is not None:
            wait = min(wait, max(0.0, nd - now))
        for zs in self.zones.values():
            wait = min(wait, max(0.0, zs.next_walk - now)) if zs.walk is None else wait
        if wait > 0:
            self.inbox.wait(wait)
        if self._inotify is not None:
            for ch in self._inotify.changes():
                self._on_change(ch)
        now = time.monotonic()
        for zs in list(self.zones.values()):
            if zs.walk is None and now >= zs.next_walk:
                self._start_walk(zs)
            if zs.walk is not None and len(self.ready) < 20_000:
                self._walk_step(zs, budget=0.05)
        if not self._redis_down():
            self.ready.extend(self.settler.pop_ready())
        self._report_settler_skips()
        self._flush()
        if now >= self._next_housekeeping:
            self._next_housekeeping = now + 1.0
            self._housekeeping()
        if now >= self._next_status:
            self._next_status = now + 1.0
            self.publish_status()
        self._watchdog(now)

    def _start_walk(self, zs: ZoneState) -> None:
        if zs.state == "lost":
            zs.next_walk = time.monotonic() + 5.0
            if os.path.isdir(zs.cfg.path):
                log.info("zone %s: %s is back; watching and walking it", zs.cfg.name, zs.cfg.path,
                         extra={"message_id": MessageId.ZONE_WATCHING, "fields": {"INGEST_ZONE": zs.cfg.name}})
                zs.watcher.add_zone(zs.cfg)
                zs.state = "watching" if zs.inotify else "polling"
                zs.trust_events = True
                zs.walk = Walk()
            return
        zs.walk = Walk()

    def _walk_step(self, zs: ZoneState, budget: float) -> None:
        walk = zs.walk
        assert walk is not None
        deadline = time.monotonic() + budget
        name = zs.cfg.name
        before = self._watch_before_list(zs) if zs.inotify and zs.state != "lost" else None
        while walk.stack:
            try:
                found, listings = self.reconciler.step(name, zs.root, walk, zs.names,
                                                       zs.cfg.symlinks == "follow", before)
            except redis.RedisError as e:
                self._on_redis_error(e)
                return
            if not os.path.isdir(zs.cfg.path):
                self._lose(zs, f"{zs.cfg.path} disappeared")
                return
            self._observe_found(zs, found)
            for lst in listings:
                self._report_listing(zs, lst)
            if time.monotonic() >= deadline:
                break
        if not walk.stack:
            self._finish_walk(zs, walk)

    def _watch_before_list(self, zs: ZoneState) -> Callable[[str], None]:
        watcher = zs.watcher

        def before(reldir: str) -> None:
            if not watcher.watch_dir(zs.cfg.name, reldir):
                if zs.walk is not None:
                    zs.walk.unwatched += 1
                if zs.trust_events and getattr(watcher, "limit_hit", False):
                    zs.trust_events = False
                    self._untrust_quiet(zs, "the inotify watch limit was reached")
        return before

    def _untrust_quiet(self, zs: ZoneState, why: str) -> None:
        log.warning("zone %s: %s; it will be walked every %gs", zs.cfg.name, why, zs.walk_interval(),
                    extra={"message_id": MessageId.ZONE_WALKING,
                           "fields": {"INGEST_ZONE": zs.cfg.name, "INGEST_RESULT": why}})
        zs.state = "walking"
        zs.next_walk = min(zs.next_walk, time.monotonic() + zs.walk_interval())

    def _finish_walk(self, zs: ZoneState, walk: Walk) -> None:
        zs.walk = None
        secs = time.monotonic() - walk.started
        if walk.full:
            zs.walks_done += 1
            zs.last_walk_seconds = secs
            if zs.inotify and not zs.trust_events and walk.unwatched == 0 and os.path.isdir(zs.cfg.path):
                zs.trust_events = True  # every directory is watched again (the limit was raised)
            zs.next_walk = time.monotonic() + zs.walk_interval()
            log.info("zone %s: walked %d directories, %d files, %d new or changed in %.1fs", zs.cfg.name,
                     walk.dirs, walk.files, walk.new, secs, extra={"fields": {"INGEST_ZONE": zs.cfg.name}})
            if zs.state == "walking" and zs.trust_events:
                zs.state = "watching"
                log.info("zone %s: events trusted again", zs.cfg.name,
                         extra={"message_id": MessageId.ZONE_WATCHING, "fields": {"INGEST_ZONE": zs.cfg.name}})

    def _observe_found(self, zs: ZoneState, found: list[Any]) -> None:
        settle = zs.cfg.settle
        # a file untouched for the settle time (plus clock-skew slack on shared file systems) is settled
        slack = 2.0 if zs.inotify else 60.0
        old = (time.time() - settle - slack) * 1e9
        for f in found:
            if f.mtime_ns <= old and not self.settler.is_settling(zs.cfg.name, f.rel):
                self.ready.append(Ready(zs.cfg.name, f.rel, f.size, f.mtime_ns))
            else:
                self.settler.observe(zs.cfg.name, f.rel, f.size, f.mtime_ns, settle)

    def _on_change(self, ch: Change) -> None:
        if ch.kind is Kind.OVERFLOW:
            self.counters.overflows += 1
            log.warning("inotify event queue overflowed (%s): walking every watched zone", ch.detail,
                        extra={"message_id": MessageId.EVENT_OVERFLOW})
            for zs in self.zones.values():
                if zs.inotify and zs.state != "lost":
                    self._untrust(zs, "events were lost (queue overflow)")
            return
        found = self.zones.get(ch.zone or "")
        if found is None or found.state == "lost":
            return
        zs = found
        if ch.kind is Kind.ZONE_LOST:
            self._lose(zs, ch.detail)
            return
        if ch.kind is Kind.DIR:
            name = ch.rel.rpartition("/")[2]
            if zs.names.dir_excluded(name, ch.rel):
                return
            if zs.walk is None:
                zs.walk = Walk(stack=[ch.rel], full=False)
            else:
                zs.walk.stack.append(ch.rel)
            return
        if ch.kind is Kind.GONE:
            self.settler.discard(zs.cfg.name, ch.rel)
            return
        name = ch.rel.rpartition("/")[2]
        if zs.names.reason_to_skip(name, ch.rel):
            return
        if ch.kind is Kind.WRITE and self.settler.touch(zs.cfg.name, ch.rel):
            return
        st = stat_file(zs.root, ch.rel, zs.cfg.symlinks == "follow")
        if st is None:
            self.settler.discard(zs.cfg.name, ch.rel)
        elif isinstance(st, str):
            self._report_skip(zs.cfg.name, ch.rel, st)
        else:
            self.settler.observe(zs.cfg.name, ch.rel, st[0], st[1], zs.cfg.settle)

    def _stat(self, zone: str, rel: str) -> tuple[int, int] | str | None:
        zs = self.zones.get(zone)
        if zs is None:
            return None
        return stat_file(zs.root, rel, zs.cfg.symlinks == "follow")

    # -- queueing ---------------------------------------------------------------------------------------
    def _flush(self) -> None:
        if not self.ready or self._redis_down():
            return
        try:
            if self._hold_for_batch():
                return
            room = self.enqueuer.room()
            self._backlog_full = room < len(self.ready)
            if room <= 0:
                return
            take, self.ready = self.ready[:room], self.ready[room:]
            by_zone: dict[str, list[FileItem]] = {}
            for x in take:
                by_zone.setdefault(x.zone, []).append(FileItem(x.rel, x.size, x.mtime_ns))
            for zone, files in by_zone.items():
                zs = self.zones.get(zone)
                if zs is None:
                    continue
                try:
                    self.counters.queued += self.enqueuer.enqueue(zs.spec, files)
                except redis.RedisError:
                    self.ready.extend(Ready(zone, f.rel, f.size, f.mtime_ns) for f in files)
                    raise
        except redis.RedisError as e:
            self._on_redis_error(e)

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

    # -- Redis health -----------------------------------------------------------------------------------
    def _on_redis_error(self, e: Exception) -> None:
        self.counters.redis_errors += 1
        if self._redis_down_since is None:
            self._redis_down_since = time.monotonic()
            log.error("Redis is not answering (%s): files keep settling and will be queued when it is back",
                      e)

    def _redis_down(self) -> bool:
        if self._redis_down_since is None:
            return False
        if time.monotonic() - self._redis_down_since < 2.0:
            return True
        try:
            self.r.ping()
        except redis.RedisError:
            self._redis_down_since = time.monotonic()
            return True
        log.info("Redis answers again")
        self._redis_down_since = None
        self._check_epoch()
        return False

    def _check_epoch(self) -> None:
        """Notice a Redis that lost its data (restarted without persistence): walk every zone again."""
        key = f"{self.cfg.redis.prefix}:epoch"
        try:
            cur = self.r.get(key)
            if cur is None:
                cur = f"{time.time():.6f}".encode()
                self.r.set(key, cur, nx=True)
                cur = self.r.get(key)
        except redis.RedisError as e:
            self._on_redis_error(e)
            return
        if self._epoch is not None and cur != self._epoch:
            log.warning("Redis lost its data (restarted without persistence?): walking every zone to "
                        "queue again what is not in iRODS")
            for zs in self.zones.values():
                if zs.state != "lost":
                    zs.walk = Walk()
        self._epoch = cur

    def _housekeeping(self) -> None:
        if self._redis_down():
            return
        try:
            self._check_epoch()
            if time.monotonic() >= self._next_reap and not self.once:
                self._next_reap = time.monotonic() + 5.0
                self.enqueuer.reap()
                after_jobs.enqueue_due(self.r, self.ledger.prefix, self.enqueuer.queue,
                                       [zs.spec for zs in self.zones.values()])
            for zs in self.zones.values():
                for rel in self.ledger.pop_resettle(zs.cfg.name):
                    st = stat_file(zs.root, rel, zs.cfg.symlinks == "follow")
                    if isinstance(st, tuple):
                        self.settler.observe(zs.cfg.name, rel, st[0], st[1], zs.cfg.settle)
        except redis.RedisError as e:
            self._on_redis_error(e)
        if self._hang_file and os.path.exists(self._hang_file):
            log.warning("%s exists: hanging the main loop (test of the watchdog)", self._hang_file)
            while os.path.exists(self._hang_file):
                time.sleep(1.0)

    # -- reporting --------------------------------------------------------------------------------------
    def _report_skip(self, zone: str, rel: str, reason: str) -> None:
        if self._reported.get((zone, rel)) == reason:
            return
        if len(self._reported) > 100_000:
            self._reported.clear()
        self._reported[(zone, rel)] = reason
        self.counters.skipped += 1
        log.warning("zone %s: skipping %s: %s", zone, _printable(rel), reason,
                    extra={"message_id": MessageId.FILE_SKIPPED,
                           "fields": {"INGEST_ZONE": zone, "INGEST_PATH": _printable(rel),
                                      "INGEST_RESULT": f"skipped: {reason}"}})

    def _report_listing(self, zs: ZoneState, lst: Listing) -> None:
        for rel, reason in lst.skipped:
            self._report_skip(zs.cfg.name, rel, reason)
        if lst.error:
            self._report_skip(zs.cfg.name, lst.reldir or ".", lst.error)

    def _report_settler_skips(self) -> None:
        while self.settler.skipped:
            zone, rel, reason = self.settler.skipped.pop()
            self._report_skip(zone, rel, reason)

    def status(self) -> dict[str, Any]:
        zones = {}
        for name, zs in self.zones.items():
            zones[name] = {
                "state": zs.state, "path": zs.root, "collection": zs.cfg.collection, "mode": zs.cfg.mode,
                "settling": self.settler.count(name), "walking": zs.walk is not None,
                "walks": zs.walks_done, "last_walk_seconds": round(zs.last_walk_seconds, 3),
                "lost_reason": zs.lost_reason or None,
            }
        return {
            "host": self.host, "pid": os.getpid(), "version": __version__, "started": self.started,
            "updated": time.time(), "zones": zones, "ready_waiting": len(self.ready),
            "backlog_full": self._backlog_full and bool(self.ready),
            "redis_down": self._redis_down_since is not None, "queued_since_start": self.counters.queued,
            "skipped": self.counters.skipped, "overflows": self.counters.overflows,
        }

    def status_line(self) -> str:
        states: dict[str, int] = {}
        for zs in self.zones.values():
            states[zs.state] = states.get(zs.state, 0) + 1
        st = ", ".join(f"{n} {s}" for s, n in sorted(states.items())) or "no zones"
        line = f"zones: {st}; settling {len(self.settler)}; queued {self.counters.queued}"
        try:
            done = failed = 0
            for name in self.zones:
                s = self.ledger.stats(name)
                done += s["done"]
                failed += s["failed"]
            line += f"; ingested {done}; failed {failed}"
        except redis.RedisError:
            line += "; Redis down"
        if self.ready and self._backlog_full:
            line += f"; waiting: backlog full ({len(self.ready)} ready)"
        return line

    def publish_status(self) -> None:
        line = self.status_line()
        self.notifier.status(line)
        if self._redis_down_since is not None:
            return
        try:
            data = self.status()
            data["line"] = line
            self.r.set(f"{self.cfg.redis.prefix}:daemon:{self.host}", json.dumps(data), ex=STATUS_TTL)
        except redis.RedisError as e:
            self._on_redis_error(e)

    def _watchdog(self, now: float) -> None:
        interval = self.notifier.watchdog_interval()
        if interval and now >= self._next_watchdog:
            self._next_watchdog = now + interval
            self.notifier.watchdog()

    # -- signals and reload -----------------------------------------------------------------------------
    def install_signals(self) -> None:
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_hup)

    def _on_stop(self, signum: int, frame: object) -> None:
        self._stop = True
        self.inbox.wake()

    def _on_hup(self, signum: int, frame: object) -> None:
        self._reload = True
        self.inbox.wake()

    def request_stop(self) -> None:
        self._on_stop(0, None)

    def reload(self) -> None:
        self.notifier.reloading()
        try:
            new = load(self.cfg.source, check_paths=False)
        except ConfigError as e:
            log.error("reload refused, keeping the running configuration:\n%s", e,
                      extra={"message_id": MessageId.RELOAD})
            self.notifier.ready(self.status_line())
            return
        old = {z.name: z for z in self.cfg.zones}
        cur = {z.name: z for z in new.zones}
        for name in old.keys() - cur.keys():
            self.remove_zone(name)
        for name, z in cur.items():
            if name in old and old[name] != z:
                self.remove_zone(name)
            if name not in self.zones:
                self.add_zone(z)
        for part in ("redis", "queue"):
            if getattr(new, part) != getattr(self.cfg, part):
                log.warning("reload: the [%s] settings changed; they take effect at the next restart", part)
        self.cfg = Config(source=new.source, redis=self.cfg.redis, irods=new.irods, queue=self.cfg.queue,
                          zones=new.zones, log_level=new.log_level)
        logging.getLogger().setLevel(new.log_level.upper())
        log.info("configuration reloaded: %d zones (%s)", len(self.zones), ", ".join(self.zones),
                 extra={"message_id": MessageId.RELOAD})
        self.notifier.ready(self.status_line())

    def close(self) -> None:
        if self._inotify is not None:
            self._inotify.close()
            self._inotify = None


def _printable(rel: str) -> str:
    """A path for logs, in the same mapped form the workers log and put into iRODS (%XX for bytes that are
    not UTF-8 or are control characters)."""
    return names.display(rel)
