"""`irods-ingestd retry [--zone Z]`: queue the failed files again."""

from __future__ import annotations

import argparse
import sys

from ..config import load


def run(args: argparse.Namespace) -> int:
    from ..tasks import retry_failed

    cfg = load(args.config, check_paths=False)
    zones = args.zone or [z.name for z in cfg.zones]
    unknown = set(zones) - {z.name for z in cfg.zones}
    if unknown:
        sys.stderr.write(f"no zone named {', '.join(sorted(unknown))}\n")
        return 2
    n = sum(retry_failed(cfg, zone=z) for z in zones)
    sys.stdout.write(f"retry: {n} failed files queued again\n")
    return 0
