"""The daemon's main loop: watch/walk → settle → queue. The daemon is a scheduler of zones, the settler
and the enqueuer: each `Zone` (zone.py) owns its watcher, walk, trust state and settle policy; routing
changes and scheduling walks is `daemon_zones`, feeding the queue `daemon_feed`, holding the zones
`daemon_owner`.

One thread does all the work here; a watcher backend with events of its own (inotify) has its own reader
thread that only drains the kernel's queue. Each turn of the loop: take the changes the watchers collected,
list a few directories of any walk in progress, take the files the settler says are ready, and queue them
in batches. Redis
being down is logged and waited out: files keep settling in memory and nothing is lost, since a file
not in the ledger is found again by the next walk.

One daemon runs a zone (`daemonlock`): a second one on the same zones refuses to start; a daemon whose
zones another took over stops. At start the ledger's `queued` counters are recounted (`recount`), and
files queued in the last minutes are looked at again every `settle` (`recent`), so a file that grows
after it was queued is queued again as a new version. `once` (the `scan` command) is not the daemon:
it takes no zone, writes no status record and recounts nothing.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from typing import Any

import redis

from . import __version__, daemonreload, daemonstatus
from .config import Config
from .daemon_feed import Feeding
from .daemon_zones import Counters, ZoneWork
from .daemonlock import ZoneOwnership, ZoneTaken
from .ledger import Ledger
from .messages import MessageId
from .metrics_daemon import DaemonMetrics
from .queue import Enqueuer
from .recent import RecentlyQueued
from .reconcile import Reconciler
from .recount import Recount
from .redisconn import connect
from .redishealth import RedisHealth
from .sdnotify import Notifier
from .settler import Ready, Settler
from .watch.api import Inbox
from .watch.select import Backends
from .zone import Zone

log = logging.getLogger(__name__)

HANG_ENV = "INGESTD_TEST_HANG_FILE"  # tests: while this file exists the main loop hangs (watchdog test)


class Daemon(ZoneWork, Feeding):
    def __init__(self, cfg: Config, r: redis.Redis | None = None, notifier: Notifier | None = None,
                 once: bool = False) -> None:
        self.cfg = cfg
        self.r = r if r is not None else connect(cfg.redis)
        self.ledger = Ledger(self.r, cfg.redis.prefix)
        self.enqueuer = Enqueuer(self.r, self.ledger, cfg.queue)
        self.reconciler = Reconciler(self.ledger, stale_queued=4 * cfg.queue.job_timeout + 3600,
                                     lost_jobs=self.enqueuer.lost_jobs)
        self.settler = Settler(self._stat)
        self.recent = RecentlyQueued(self._stat)
        self.notifier = notifier or Notifier()
        self.once = once  # `scan`: one walk of each zone, wait for what settles, queue, exit
        self.inbox = Inbox()
        self.watchers = Backends(self.inbox, once)
        self.zones: dict[str, Zone] = {}
        self.ready: list[Ready] = []
        self.counters = Counters()
        self._reported: dict[tuple[str, str], str] = {}  # skipped files reported once
        self._stop = False
        self._reload = False
        self.exit_code = 0
        self.health = RedisHealth(self.r, cfg.redis.prefix, self._walk_all)
        self.host = socket.gethostname()
        self.owner = None if once else ZoneOwnership(self.r, cfg.redis.prefix, self.host)
        if self.owner is not None:
            self.owner.configs = {z.name: z for z in cfg.zones}
        self._owned = once  # the zones are ours (scan takes none)
        self.recounts: list[Recount] = []
        self._renewed = time.monotonic()  # the zones were last known to be ours
        self._next_status = 0.0
        self._next_housekeeping = 0.0
        self._next_reap = 0.0
        self._backlog_full = False
        self._ready_since: float | None = None
        self._next_watchdog = 0.0
        self._hang_file = os.environ.get(HANG_ENV)
        self.started = time.time()
        self.metrics = DaemonMetrics(self)  # [metrics].listen: served from start() to close()

    # -- the loop ---------------------------------------------------------------------------------------
    def start(self) -> None:
        """Take the zones (ZoneTaken if another daemon runs one), add them, recount their counters."""
        self._take_zones([z.name for z in self.cfg.zones])
        for z in self.cfg.zones:
            self.add_zone(z)
        self.health.check_epoch()
        self.metrics.start()

    def run(self) -> int:
        self.install_signals()
        try:
            self.start()
        except ZoneTaken as e:
            self._refuse(e, "refusing to start")
            self.close()
            return self.exit_code
        # READY only after the first watches are in place: the root watches now, the rest as walked
        for zs in self.zones.values() if self._owned else ():
            if zs.watcher.complete and zs.state == "watching":
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
        if self._owned:
            self._flush()
        self._log_pending()
        self.close()
        return self.exit_code

    def _idle(self) -> bool:
        return all(zs.walk is None for zs in self.zones.values()) and not len(self.settler) and not self.ready

    def turn(self, max_wait: float = 1.0) -> None:
        """One turn of the main loop (tests drive the daemon with this)."""
        wait = self._wait(time.monotonic(), max_wait)
        if wait > 0:
            self.inbox.wait(wait)
        self._on_changes()
        now = time.monotonic()
        if self._walking():
            self._walk_zones(now)
        if not self.health.down():
            self._add_ready(self.settler.pop_ready())
            self._recheck_recent()
        self._report_settler_skips()
        if self._owned:
            self._flush()
        self._recount_step()
        if now >= self._next_housekeeping:
            self._next_housekeeping = now + 1.0
            self._housekeeping()
        if now >= self._next_status and not self.once:
            self._next_status = now + 1.0
            self.publish_status()
        self._watchdog(now)

    def _wait(self, now: float, max_wait: float) -> float:
        """How long the loop may sleep: until the next settle deadline, walk, recheck or event."""
        wait = max_wait
        walking = self._walking() and any(zs.walk for zs in self.zones.values())
        if walking or (self.recounts and self.health.down_since is None):
            wait = 0.0
        elif self.ready and (self.backlog_full() or not self._owned or self.health.down_since is not None):
            wait = min(wait, 0.2)  # waiting for room, the zones or Redis: look again soon, do not spin
        elif self.ready:
            wait = 0.0 if self._ready_since is None else min(wait, 0.01)
        for due in (self.settler.next_deadline(), self.recent.next_due()):
            if due is not None:
                wait = min(wait, max(0.0, due - now))
        for zs in self.zones.values():
            wait = min(wait, max(0.0, zs.next_walk - now)) if zs.walk is None else wait
        return wait

    def _walking(self) -> bool:
        """Walks go on while the zones are this daemon's and Redis answers (a walk reads the ledger)."""
        return self._owned and self.health.down_since is None

    # -- reporting --------------------------------------------------------------------------------------

    def _log_pending(self) -> None:
        """The stop's journal line: what was settling or ready and not queued (the next start's walk finds
        it again; what is queued stays queued for the workers)."""
        ready: dict[str, int] = {}
        for x in self.ready:
            ready[x.zone] = ready.get(x.zone, 0) + 1
        per = [f"{z}: {self.settler.count(z)} settling, {ready.get(z, 0)} ready" for z in self.zones
               if self.settler.count(z) or ready.get(z)]
        log.info("irods-ingestd stopping: %d files settling and %d ready, not queued (the next start's walk finds "
                 "them again)%s", len(self.settler), len(self.ready), f" ({'; '.join(per)})" if per else "",
                 extra={"message_id": MessageId.DAEMON_STOPPING})

    def status(self) -> dict[str, Any]:
        return daemonstatus.build(self)

    def status_line(self) -> str:
        return daemonstatus.line(self)

    def publish_status(self) -> None:
        line = self.status_line()
        self.notifier.status(line)
        self.metrics.update()
        if self.health.down_since is not None or not self._owned:
            return
        try:
            daemonstatus.publish(self, line)
        except redis.RedisError as e:
            self.health.error(e)

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
        daemonreload.reload(self)

    def close(self) -> None:
        """Stop watching; a daemon withdraws its status record and lets its zones go."""
        self.watchers.close()
        self.inbox.close()
        self.metrics.stop()
        if self.owner is not None and self._owned:
            try:
                daemonstatus.withdraw(self)
                self.owner.release()
            except redis.RedisError:
                pass  # both expire by themselves
            self._owned = False
