"""A landing zone: its watcher, its walk, whether its events are trusted, and its settle policy.

The daemon schedules zones (`due`, `walk_step`), hands each its watcher's changes (`on_change`), and
receives what they find through a `ZoneSink` (the settler, the ready list, the report of skipped
files). A zone holds no daemon state: `walk_step` needs only the reconciler (the ledger) and a sink, so
it is the unit a walk job on another host will run.

States: *watching* (a complete watcher: events trusted, walked every `rescan`), *polling* (a watcher that
reports nothing: walked every `poll_interval`), *walking* (events no longer trusted: an overflow, a watch
limit; walked on the short timer until a full walk finds every directory watched), *lost* (the zone's
directory is missing or aliased; looked at every few seconds).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from . import fsops, metrics, names, notify
from .completion.gate import Gate
from .config import ZoneConfig
from .config_paths import aliasing_problems
from .filters import NameFilter
from .job import ZoneSpec
from .messages import MessageId
from .reconcile import Found, Reconciler, Walk
from .walker import stat_file
from .watch.api import Change, Kind, Watcher

log = logging.getLogger("irods_ingestd.daemon")

LOST_RETRY = 5.0  # seconds between looks at a lost zone
ROOT_CHECK = 1.0  # seconds between looks at whether the zone's path still names the directory watched


class ZoneSink(Protocol):
    """Where a zone's findings go: the settler's calls, the ready list, the report of skipped files."""

    def observe(self, zone: str, rel: str, size: int, mtime_ns: int, settle: float) -> None: ...
    def touch(self, zone: str, rel: str) -> bool: ...
    def is_settling(self, zone: str, rel: str) -> bool: ...
    def discard(self, zone: str, rel: str | None = None) -> None: ...
    def ready_file(self, zone: str, rel: str, size: int, mtime_ns: int) -> None: ...
    def report_skip(self, zone: str, rel: str, reason: str) -> None: ...


class NullSink:
    """A `ZoneSink` that keeps nothing and settles nothing: the base of sinks that record only part of what a
    walk finds (the dry run's settle decision, a benchmark's counts)."""

    def observe(self, zone: str, rel: str, size: int, mtime_ns: int, settle: float) -> None:
        pass

    def touch(self, zone: str, rel: str) -> bool:
        return False

    def is_settling(self, zone: str, rel: str) -> bool:
        return False

    def discard(self, zone: str, rel: str | None = None) -> None:
        pass

    def ready_file(self, zone: str, rel: str, size: int, mtime_ns: int) -> None:
        pass

    def report_skip(self, zone: str, rel: str, reason: str) -> None:
        pass


def _fields(zone: str, result: str | None = None) -> dict[str, str]:
    return {"INGEST_ZONE": zone} if result is None else {"INGEST_ZONE": zone, "INGEST_RESULT": result}


@dataclass
class Zone:
    cfg: ZoneConfig
    watcher: Watcher
    state: str = "starting"  # watching | walking | polling | lost
    walk: Walk | None = None
    next_walk: float = 0.0
    walks_done: int = 0
    last_walk_seconds: float = 0.0
    trust_events: bool = True
    lost_reason: str = ""
    root_id: tuple[int, int] | None = None  # (dev, ino) of the directory watched, what the path named then
    root_checked: float = 0.0
    spec: ZoneSpec = field(init=False)
    names: NameFilter = field(init=False)
    gate: Gate | None = field(init=False)  # complete_when = marker/manifest: files wait for their directory

    def __post_init__(self) -> None:
        self.spec = ZoneSpec.from_config(self.cfg)
        self.names = NameFilter.for_zone(self.cfg)
        self.gate = Gate(self.cfg) if self.cfg.completion.by_directory else None

    @property
    def on_close(self) -> bool:
        """complete_when = "close": a closed file is ready after close_settle; an open one never."""
        return self.cfg.completion.complete_when == "close"

    def open_for_writing(self, rel: str) -> bool:
        return fsops.open_for_writing(os.path.join(self.root, rel)) is True

    def _closed(self, sink: ZoneSink, rel: str, size: int, mtime_ns: int) -> None:
        """A "close" zone's file no process holds open for writing: ready after close_settle (a sink with
        no notion of it, e.g. the planner's, settles it as usual)."""
        closed = getattr(sink, "closed", None)
        if closed is None:
            sink.observe(self.name, rel, size, mtime_ns, self.cfg.settle)
        else:
            closed(self.name, rel, size, mtime_ns, self.cfg.settle, self.cfg.completion.close_settle)

    @property
    def name(self) -> str:
        return self.cfg.name

    @property
    def root(self) -> str:
        return str(self.cfg.path)

    @property
    def follow(self) -> bool:
        return self.cfg.symlinks == "follow"

    def _running_state(self) -> str:
        return "watching" if self.watcher.complete else "polling"

    def walk_interval(self) -> float:
        if self.watcher.complete and self.trust_events:
            return self.cfg.rescan
        return min(self.cfg.poll_interval, self.cfg.rescan)

    def due(self, now: float) -> bool:
        """No walk in progress and the next one is due."""
        return self.walk is None and now >= self.next_walk

    def stat(self, rel: str) -> tuple[int, int] | str | None:
        return stat_file(self.root, rel, self.follow)

    # -- life -------------------------------------------------------------------------------------------
    def begin(self, sink: ZoneSink) -> None:
        """Start watching and walking (the first walk also places the watches)."""
        z = self.cfg
        self.watcher.add_zone(z)
        if not os.path.isdir(z.path):
            self.lose(f"{z.path} is not a directory (missing or unmounted?)", sink)
            return
        self.state = self._running_state()
        self.root_id = self._root_identity()
        self.walk = Walk()
        log.info("zone %s: %s %s → %s (%s, settle %gs)", z.name, self.state, z.path, z.collection, z.mode,
                 z.settle, extra={"fields": _fields(z.name)})

    def end(self) -> None:
        self.watcher.remove_zone(self.name)

    def lose(self, reason: str, sink: ZoneSink) -> None:
        if self.state != "lost":
            log.error("zone %s: %s; checking again every few seconds", self.name, reason,
                      extra={"message_id": MessageId.ZONE_WALKING, "fields": _fields(self.name, "zone lost")})
            notify.zone_lost(self.cfg.notify, self.name, self.root, self.cfg.collection, reason)
        self.state, self.lost_reason, self.walk = "lost", reason, None
        self.watcher.remove_zone(self.name)
        sink.discard(self.name)
        self.next_walk = time.monotonic() + LOST_RETRY

    def untrust(self, why: str) -> None:
        """Events can no longer be trusted: walk the whole zone now, and on a short timer until trusted."""
        if self.state == "watching":
            log.warning("zone %s: %s; walking the zone to find what was missed", self.name, why,
                        extra={"message_id": MessageId.ZONE_WALKING, "fields": _fields(self.name, why)})
        self.state = "walking"
        self.next_walk = min(self.next_walk, time.monotonic() + self.walk_interval())
        if self.walk is None or not self.walk.full:
            self.walk = Walk()

    def _untrust_quiet(self, why: str) -> None:
        log.warning("zone %s: %s; it will be walked every %gs", self.name, why, self.walk_interval(),
                    extra={"message_id": MessageId.ZONE_WALKING, "fields": _fields(self.name, why)})
        self.state = "walking"
        self.next_walk = min(self.next_walk, time.monotonic() + self.walk_interval())

    def rewalk(self) -> None:
        """Walk the whole zone again from the top (Redis lost its data)."""
        if self.state != "lost":
            self.walk = Walk()

    # -- walks ------------------------------------------------------------------------------------------
    def start_walk(self, zones: Sequence[ZoneConfig],
                   claim: Callable[[ZoneConfig], str | None] | None = None) -> None:
        """Begin a due walk; a lost zone is looked at instead (back, and not aliased with `zones`, nor, says
        `claim`, with another daemon's zones?)."""
        if self.state != "lost":
            self.walk = Walk()
            return
        self.next_walk = time.monotonic() + LOST_RETRY
        if not os.path.isdir(self.cfg.path):
            return
        aliased = self._aliased(zones) or (claim(self.cfg) if claim is not None else None)
        if aliased:
            if self.lost_reason != aliased:
                log.error("zone %s is not walked: %s", self.name, aliased, extra={"fields": _fields(self.name)})
            self.lost_reason = aliased
            return
        log.info("zone %s: %s is back; watching and walking it", self.name, self.cfg.path,
                 extra={"message_id": MessageId.ZONE_WATCHING, "fields": _fields(self.name)})
        self.watcher.add_zone(self.cfg)
        self.state = self._running_state()
        self.root_id = self._root_identity()
        self.trust_events = True
        self.walk = Walk()

    def _root_identity(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.cfg.path)
        except OSError:
            return None
        return st.st_dev, st.st_ino

    def check_root(self, sink: ZoneSink, now: float) -> None:
        """A watched zone whose path now names another directory (a symlink repointed, a directory swapped in
        by rename, which the old directory's watch never hears of) is lost, and at once looked at again:
        the new directory is watched and walked. Every ROOT_CHECK seconds: one stat."""
        if not self.watcher.complete or self.state == "lost" or now - self.root_checked < ROOT_CHECK:
            return
        self.root_checked = now
        cur = self._root_identity()
        if self.root_id is not None and cur != self.root_id:
            self.lose(f"{self.cfg.path} is now another directory (a symlink repointed, or the directory "
                      f"replaced)" if cur else f"{self.cfg.path} disappeared", sink)
            self.next_walk = now  # back at once if it is a directory

    def _aliased(self, zones: Sequence[ZoneConfig]) -> str | None:
        """Why a zone's directory, (re)appearing after start, may not be walked: it is really inside
        another zone (a symlink or bind mount made since the config was checked), or its move_to is."""
        mine = f"zone {self.name!r}"
        for p in aliasing_problems(list(zones)):
            if mine in p:
                return p
        return None

    def walk_step(self, reconciler: Reconciler, sink: ZoneSink, budget: float) -> None:
        """List directories of the walk in progress for about `budget` seconds; what is new or changed
        goes to the sink. Redis errors propagate (the walk goes on from where it was)."""
        walk = self.walk
        assert walk is not None
        deadline = time.monotonic() + budget
        before = self._watch_before_list() if self.watcher.complete and self.state != "lost" else None
        while walk.stack:
            found, listings = reconciler.step(self.name, self.root, walk, self.names, self.follow, before)
            if not os.path.isdir(self.cfg.path):
                self.lose(f"{self.cfg.path} disappeared", sink)
                return
            self.take_found(found, sink)
            for lst in listings:
                for rel, reason in lst.skipped:
                    sink.report_skip(self.name, rel, reason)
                if lst.error:
                    sink.report_skip(self.name, lst.reldir or ".", lst.error)
            if time.monotonic() >= deadline:
                break
        if not walk.stack:
            self._finish_walk(walk)

    def _watch_before_list(self) -> Callable[[str], None]:
        watcher = self.watcher

        def before(reldir: str) -> None:
            if not watcher.watch_dir(self.name, reldir):
                if self.walk is not None:
                    self.walk.unwatched += 1
                if self.trust_events and watcher.limit_hit:
                    self.trust_events = False
                    self._untrust_quiet(watcher.limit_what)
        return before

    # walk jobs (walk_sched.py) list the directories elsewhere: the zone watches them first and ends the walk
    def watch_hook(self) -> Callable[[str], None] | None:
        return self._watch_before_list() if self.watcher.complete and self.state != "lost" else None

    def finish_walk(self, walk: Walk) -> None:
        self._finish_walk(walk)

    def _finish_walk(self, walk: Walk) -> None:
        self.walk = None
        if not walk.full:
            return
        secs = time.monotonic() - walk.started
        self.walks_done += 1
        self.last_walk_seconds = secs
        metrics.walked(self.name, secs)
        if self.watcher.complete and not self.trust_events and walk.unwatched == 0 and os.path.isdir(self.cfg.path):
            self.trust_events = True  # every directory is watched again (the limit was raised)
        self.next_walk = time.monotonic() + self.walk_interval()
        log.info("zone %s: walked %d directories, %d files, %d new or changed in %.1fs", self.name,
                 walk.dirs, walk.files, walk.new, secs, extra={"fields": _fields(self.name)})
        if self.state == "walking" and self.trust_events:
            self.state = "watching"
            log.info("zone %s: events trusted again", self.name,
                     extra={"message_id": MessageId.ZONE_WATCHING, "fields": _fields(self.name)})

    # -- the settle policy ------------------------------------------------------------------------------
    def take_found(self, found: Sequence[Found], sink: ZoneSink) -> None:
        """A file a walk found untouched for `settle` (plus the watcher's clock-skew slack) is ready at
        once, unless it is settling already; any other settles."""
        settle = self.cfg.settle
        old = (time.time() - settle - self.watcher.mtime_slack) * 1e9
        for f in found:
            if self.on_close and not sink.is_settling(self.name, f.rel) and not self.open_for_writing(f.rel):
                self._closed(sink, f.rel, f.size, f.mtime_ns)
            elif f.mtime_ns <= old and not sink.is_settling(self.name, f.rel) and not self.on_close:
                sink.ready_file(self.name, f.rel, f.size, f.mtime_ns)
            else:
                sink.observe(self.name, f.rel, f.size, f.mtime_ns, settle)

    def on_change(self, ch: Change, sink: ZoneSink) -> None:
        """One change the watcher reported in this zone (not an overflow: see `untrust`)."""
        if self.state == "lost":
            return
        if ch.kind is Kind.ZONE_LOST:
            self.lose(ch.detail, sink)
            return
        name = ch.rel.rpartition("/")[2]
        if ch.kind is Kind.DIR:
            if self.names.dir_excluded(name, ch.rel):
                return
            if self.walk is None:
                self.walk = Walk(stack=[ch.rel], full=False)
            else:
                self.walk.stack.append(ch.rel)
            return
        if ch.kind is Kind.GONE:
            sink.discard(self.name, ch.rel)
            return
        if self.names.reason_to_skip(name, ch.rel):
            return
        if ch.kind is Kind.WRITE and not self.on_close and sink.touch(self.name, ch.rel):
            return
        st = self.stat(ch.rel)
        if st is None:
            sink.discard(self.name, ch.rel)
        elif isinstance(st, str):
            sink.report_skip(self.name, ch.rel, st)
        elif self.on_close and not self.open_for_writing(ch.rel):  # closed by its writer (IN_CLOSE_WRITE)
            self._closed(sink, ch.rel, st[0], st[1])
        else:
            sink.observe(self.name, ch.rel, st[0], st[1], self.cfg.settle)


def printable(rel: str) -> str:
    """A path for logs, in the same mapped form the workers log and put into iRODS (%XX for bytes that are
    not UTF-8 or are control characters)."""
    return names.display(rel)
