"""`irods-ingestd scan [--zone Z]`: one reconcile pass now, e.g. to onboard a large existing tree.

Walks the zones, waits for what is still settling, queues what is new or changed, and exits. On a
terminal it shows progress on stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

from ..config import ConfigError, load
from ..daemon import Daemon


def run(args: argparse.Namespace) -> int:
    cfg = load(args.config, check_paths=True)
    if args.zone:
        zones = tuple(z for z in cfg.zones if z.name in args.zone)
        missing = set(args.zone) - {z.name for z in zones}
        if missing:
            raise ConfigError(cfg.source, [f"no zone named {m!r}" for m in sorted(missing)])
        cfg = dataclasses.replace(cfg, zones=zones)
    d = Daemon(cfg, once=True)
    d.install_signals()
    d.start()
    tty = sys.stderr.isatty()
    last = 0.0
    t0 = time.monotonic()
    while not d._idle() and not d._stop:
        d.turn(max_wait=0.2)
        now = time.monotonic()
        if tty and now - last > 0.2:
            last = now
            dirs = sum(zs.walk.dirs for zs in d.zones.values() if zs.walk)
            files = sum(zs.walk.files for zs in d.zones.values() if zs.walk)
            sys.stderr.write(f"\r{_spinner(now)} walked {dirs} dirs, {files} files; settling "
                             f"{len(d.settler)}; queued {d.counters.queued}   ")
            sys.stderr.flush()
    d.close()
    if tty:
        sys.stderr.write("\n")
    sys.stdout.write(f"scan: queued {d.counters.queued} files in {time.monotonic() - t0:.1f}s; "
                     f"skipped {d.counters.skipped}\n")
    return 0


def _spinner(t: float) -> str:
    return "|/-\\"[int(t * 5) % 4]
