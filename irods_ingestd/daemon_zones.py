"""The daemon's zones: watching and walking them, and what their events and walks find.

A mixin of `Daemon` (kept apart to keep each module small): zone states, the watchers, walks step by
step (`reconcile`), what a walk or an event found handed to the settler (or, already settled, straight
to the ready list), and the skipped files reported once.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from . import names
from .config import Config, ZoneConfig
from .config_paths import aliasing_problems
from .filters import NameFilter
from .job import ZoneSpec
from .messages import MessageId
from .queue import Enqueuer
from .recent import RecentlyQueued
from .reconcile import Reconciler, Walk
from .redishealth import RedisHealth
from .settler import Ready, Settler
from .walker import Listing, stat_file
from .watch.api import Change, Inbox, Kind, Watcher
from .watch.inotify import InotifyWatcher
from .watch.poll import PollWatcher

log = logging.getLogger("irods_ingestd.daemon")


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
    sent: int = 0  # files handed to the queue since start
    skipped: int = 0
    overflows: int = 0


class ZoneWork:
    """Zones, walks and events of the daemon (see `Daemon` for the attributes it sets up)."""

    cfg: Config
    once: bool
    zones: dict[str, ZoneState]
    settler: Settler
    recent: RecentlyQueued
    ready: list[Ready]
    reconciler: Reconciler
    enqueuer: Enqueuer
    health: RedisHealth
    inbox: Inbox
    _inotify: InotifyWatcher | None
    _poll: PollWatcher
    _reported: dict[tuple[str, str], str]
    counters: Counters

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
        self.recent.discard(name)
        self.ready = [x for x in self.ready if x.zone != name]

    def _aliased(self, zs: ZoneState) -> str | None:
        """Why a zone's directory, (re)appearing after start, may not be walked: it is really inside
        another zone (a symlink or bind mount made since the config was checked), or its move_to is."""
        mine = f"zone {zs.cfg.name!r}"
        for p in aliasing_problems([z.cfg for z in self.zones.values()]):
            if mine in p:
                return p
        return None

    def _walk_all(self) -> None:
        for zs in self.zones.values():
            if zs.state != "lost":
                zs.walk = Walk()

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

    def _start_walk(self, zs: ZoneState) -> None:
        if zs.state == "lost":
            zs.next_walk = time.monotonic() + 5.0
            if os.path.isdir(zs.cfg.path):
                aliased = self._aliased(zs)
                if aliased:
                    if zs.lost_reason != aliased:
                        log.error("zone %s is not walked: %s", zs.cfg.name, aliased,
                                  extra={"fields": {"INGEST_ZONE": zs.cfg.name}})
                    zs.lost_reason = aliased
                    return
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
                self.health.error(e)
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

    def _report_skip(self, zone: str, rel: str, reason: str) -> None:
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

    def _report_listing(self, zs: ZoneState, lst: Listing) -> None:
        for rel, reason in lst.skipped:
            self._report_skip(zs.cfg.name, rel, reason)
        if lst.error:
            self._report_skip(zs.cfg.name, lst.reldir or ".", lst.error)

    def _report_settler_skips(self) -> None:
        while self.settler.skipped:
            zone, rel, reason = self.settler.skipped.pop()
            self._report_skip(zone, rel, reason)


def printable(rel: str) -> str:
    """A path for logs, in the same mapped form the workers log and put into iRODS (%XX for bytes that are
    not UTF-8 or are control characters)."""
    return names.display(rel)
