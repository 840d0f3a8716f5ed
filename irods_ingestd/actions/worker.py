"""`irods-ingestd worker [--queue Q] [--role ingest|walk|all] [--burst] [--name N] [--hostname H]`: one RQ
worker ingesting into iRODS, or listing directories for walk jobs (`--role walk`, see walkjobs.py)."""

from __future__ import annotations

import argparse
import os

from ..config import load


def run(args: argparse.Namespace) -> int:
    from ..worker import HOSTNAME_ENV, run_worker

    cfg = load(args.config, check_paths=False)
    if getattr(args, "hostname", None):
        os.environ[HOSTNAME_ENV] = args.hostname
    role = getattr(args, "role", "ingest")
    queues: list[str] = {"ingest": [cfg.queue.name], "walk": [cfg.walk.queue],
                         "all": [cfg.walk.queue, cfg.queue.name]}[role]
    if args.queue:
        queues = [args.queue]
    run_worker(cfg, queue_name=queues, burst=args.burst, name=args.name)
    return 0
