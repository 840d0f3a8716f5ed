"""`irods-ingestd retry [--zone Z]`: queue the failed files again.

The failures are cleared and the files handed to the daemon that runs their zone, which settles and
queues them; the message says which daemon, or that they wait for one when none runs the zone.
"""

from __future__ import annotations

import argparse
import sys

from ..config import load
from ..daemonlock import owner
from ..redisconn import connect


def run(args: argparse.Namespace) -> int:
    from ..tasks import retry_failed

    cfg = load(args.config, check_paths=False)
    zones = args.zone or [z.name for z in cfg.zones]
    unknown = set(zones) - {z.name for z in cfg.zones}
    if unknown:
        sys.stderr.write(f"no zone named {', '.join(sorted(unknown))}\n")
        return 2
    r = connect(cfg.redis)
    by_daemon: dict[str, int] = {}
    unowned: dict[str, int] = {}
    for z in zones:
        n = retry_failed(cfg, zone=z)
        h = owner(r, cfg.redis.prefix, z)
        if h is None:
            unowned[z] = n
        else:
            key = f"host {h.host} (pid {h.pid})"
            by_daemon[key] = by_daemon.get(key, 0) + n
    for who, n in by_daemon.items():
        sys.stdout.write(f"retry: {n} failed files queued again: handed to the daemon on {who}\n")
    if unowned:
        sys.stdout.write(f"retry: {sum(unowned.values())} failed files will be queued again when the daemon "
                         f"runs (no daemon runs zone {', '.join(sorted(unowned))})\n")
    return 0
