"""`irods-ingestd status [--json]`: per zone, watching or walking, settling, queued, ingested, failed."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rq import Queue
from rq.registry import FailedJobRegistry, StartedJobRegistry

from .. import names
from ..config import Config, load
from ..ledger import Ledger
from ..redisconn import connect


def gather(cfg: Config, failed_limit: int = 20) -> dict[str, Any]:
    r = connect(cfg.redis)
    ledger = Ledger(r, cfg.redis.prefix)
    daemons = []
    for key in r.scan_iter(f"{cfg.redis.prefix}:daemon:*"):
        raw = r.get(key)
        if raw:
            daemons.append(json.loads(raw))
    live: dict[str, Any] = {}
    for d in daemons:
        live.update(d.get("zones", {}))
    zones = {}
    for z in cfg.zones:
        stats = ledger.stats(z.name)
        failed = []
        for i, (rel, info) in enumerate(ledger.failures(z.name)):
            if i >= failed_limit:
                break
            failed.append({"path": names.display(rel), **info})
        d = live.get(z.name, {})
        zones[z.name] = {
            "state": d.get("state", "daemon not running"), "path": str(z.path), "collection": z.collection,
            "settling": d.get("settling", 0), "queued": stats["queued"], "ingested": stats["done"],
            "bytes": stats["bytes"], "failed": stats["failed"], "failed_files": failed,
        }
    q = Queue(cfg.queue.name, connection=r)
    return {
        "daemons": daemons,
        "queue": {"name": q.name, "jobs_waiting": q.count,
                  "jobs_running": StartedJobRegistry(queue=q).count,
                  "jobs_failed": FailedJobRegistry(queue=q).count},
        "zones": zones,
    }


def render(s: dict[str, Any]) -> str:
    lines = []
    if not s["daemons"]:
        lines.append("daemon: not running (no status in Redis for 30 s)")
    for d in s["daemons"]:
        lines.append(f"daemon: {d['host']} pid {d['pid']} version {d['version']}: {d.get('line', '')}")
    q = s["queue"]
    lines.append(f"queue {q['name']}: {q['jobs_waiting']} jobs waiting, {q['jobs_running']} running, "
                 f"{q['jobs_failed']} failed")
    for name, z in s["zones"].items():
        lines.append(f"zone {name}: {z['state']}; settling {z['settling']}, queued {z['queued']}, "
                     f"ingested {z['ingested']} ({z['bytes']} bytes), failed {z['failed']}  "
                     f"[{z['path']} → {z['collection']}]")
        for f in z["failed_files"]:
            lines.append(f"    failed: {f['path']}: {f.get('reason')}")
        if z["failed"] > len(z["failed_files"]):
            lines.append(f"    ... and {z['failed'] - len(z['failed_files'])} more (irods-ingestd status --json)")
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    cfg = load(args.config, check_paths=False)
    s = gather(cfg, failed_limit=10_000 if args.json else 20)
    sys.stdout.write(json.dumps(s, indent=2) + "\n" if args.json else render(s))
    return 0
