"""`irods-ingestd scan [--zone Z] [--backlog-wait S]`: one reconcile pass now, e.g. to onboard a large
existing tree.

Walks the zones, waits for what is still settling, sends what is new or changed (or whose job was lost)
to the queue, and exits. It is not the daemon: it takes no zone and writes no status record, and may run
beside a daemon (the queue's check-and-enqueue is atomic, so no file is queued twice). When the backlog
is full (`max_backlog`) it says so and waits for workers; after `--backlog-wait` seconds without
progress it exits with code 3, naming what it could not send (a running daemon queues those by itself).
On a terminal it shows progress on stderr.

`--jobs`: the zones' directories are listed by walk jobs (walk_sched.py) when walk workers listen on
`[walk].queue` (`irods-ingestd worker --role walk`, on this or other hosts); else scan walks by itself.
"""

from __future__ import annotations

import argparse
import dataclasses
import socket
import sys
import time

import redis

from ..config import Config, ConfigError, load
from ..daemon import Daemon
from ..daemonclaims import running_overlaps
from ..redisconn import connect

BACKLOG_FULL_EXIT = 3


def run(args: argparse.Namespace) -> int:
    cfg = load(args.config, check_paths=True)
    if args.zone:
        zones = tuple(z for z in cfg.zones if z.name in args.zone)
        missing = set(args.zone) - {z.name for z in zones}
        if missing:
            raise ConfigError(cfg.source, [f"no zone named {m!r}" for m in sorted(missing)])
        cfg = dataclasses.replace(cfg, zones=zones)
    if getattr(args, "jobs", False):
        cfg = dataclasses.replace(cfg, walk=dataclasses.replace(cfg.walk, jobs=True))
    _refuse_overlaps(cfg)
    d = Daemon(cfg, once=True)
    d.install_signals()
    d.start()
    if cfg.walk.jobs:
        n = d._walk_jobs().workers()
        sys.stderr.write(f"scan: {n} walk workers listen on queue {cfg.walk.queue}"
                         f"{'' if n else '; walking here'}\n")
    t0 = time.monotonic()
    try:
        code = _loop(d, getattr(args, "backlog_wait", 60.0), sys.stderr.isatty())
    finally:
        d.close()
    sys.stdout.write(f"scan: sent {d.counters.sent} files to the queue in {time.monotonic() - t0:.1f}s; "
                     f"skipped {d.counters.skipped}\n")
    return code


def _refuse_overlaps(cfg: Config) -> None:
    """scan takes no zone, so a running daemon's ownership keys do not stop it; a zone of this config that
    overlaps another daemon's zone of another name would queue its files a second time (daemonclaims)."""
    try:
        problems = running_overlaps(connect(cfg.redis), cfg.redis.prefix, socket.gethostname(), cfg.zones)
    except redis.RedisError:
        return  # the walk says Redis is away and waits for it
    if problems:
        raise ConfigError(cfg.source, [*problems, "scan would queue their files a second time: scan with the "
                                       "config of the daemon that runs them"])


def _loop(d: Daemon, backlog_wait: float, tty: bool) -> int:
    last = 0.0
    stuck_since: float | None = None  # the backlog is full and has not shrunk since
    low = 0
    while not d._idle() and not d._stop:
        d.turn(max_wait=0.2)
        now = time.monotonic()
        if d.backlog_full():
            queued = d.enqueuer.backlog()
            if stuck_since is None or queued < low:
                if stuck_since is None:
                    sys.stderr.write(f"scan: backlog full ({_backlog(d)}): waiting for workers to take files "
                                     f"(at most {backlog_wait:g}s without progress)\n")
                stuck_since, low = now, queued
            elif now - stuck_since >= backlog_wait:
                sys.stderr.write(f"{chr(10) if tty else ''}scan: backlog full ({_backlog(d)}) and no worker took a "
                                 f"file for {backlog_wait:g}s: {len(d.ready)} files not sent to the queue (and "
                                 f"{len(d.settler)} still settling); a running daemon queues them, or run scan "
                                 f"again when workers run\n")
                return BACKLOG_FULL_EXIT
        else:
            stuck_since = None
        if tty and now - last > 0.2:
            last = now
            sys.stderr.write(f"\r{_progress(d, now)}   ")
            sys.stderr.flush()
    if tty:
        sys.stderr.write("\n")
    return 0


def _backlog(d: Daemon) -> str:
    return f"{d.enqueuer.backlog(0)} files queued, max_backlog {d.cfg.queue.max_backlog}"


def _progress(d: Daemon, now: float) -> str:
    dirs = sum(zs.walk.dirs for zs in d.zones.values() if zs.walk)
    files = sum(zs.walk.files for zs in d.zones.values() if zs.walk)
    text = f"{_spinner(now)} walked {dirs} dirs, {files} files; settling {len(d.settler)}; sent {d.counters.sent}"
    return text + (f"; waiting: backlog full ({len(d.ready)} ready)" if d.backlog_full() else "")


def _spinner(t: float) -> str:
    return "|/-\\"[int(t * 5) % 4]
