"""`irods-ingestd worker [--queue Q] [--burst] [--name N]`: one RQ worker ingesting into iRODS."""

from __future__ import annotations

import argparse

from ..config import load


def run(args: argparse.Namespace) -> int:
    from ..worker import run_worker

    cfg = load(args.config, check_paths=False)
    run_worker(cfg, queue_name=args.queue, burst=args.burst, name=args.name)
    return 0
