"""`irods-ingestd status [--json] [--recount]`: per zone, watching or walking, settling, queued, ingested,
failed.

Each daemon's record (`{prefix}:daemon:{host}:{pid}`) gives a daemon line; each zone line says which
daemon runs it. *queued* means one thing on every line: files in the ledger as queued, waiting for or
in a worker. `--recount` first recounts those counters from the ledger's entries (exact while daemons
and workers go on), for a count that drifted (an older version, a Redis that lost keys).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rq import Queue
from rq.registry import FailedJobRegistry, StartedJobRegistry

from .. import daemonstatus, keys, names
from ..completion import units as completion_units
from ..config import Config, load
from ..daemonlock import owner
from ..ingest import replicas
from ..ledger import Ledger
from ..recount import Recount
from ..redisconn import connect


def recount(cfg: Config) -> dict[str, dict[str, int]]:
    """Recount the configured zones' `queued` counters; zone → {before, after}."""
    rc = Recount(Ledger(connect(cfg.redis), cfg.redis.prefix), [z.name for z in cfg.zones])
    rc.run()
    return {z: {"before": b, "after": a} for z, (b, a) in rc.result.items()}


def gather(cfg: Config, failed_limit: int = 20) -> dict[str, Any]:
    r = connect(cfg.redis)
    ledger = Ledger(r, cfg.redis.prefix)
    daemons = daemonstatus.read_all(r, cfg.redis.prefix)
    live = daemonstatus.zones_run(daemons)
    zones = {}
    for z in cfg.zones:
        stats = ledger.stats(z.name)
        failed = []
        for i, (rel, info) in enumerate(ledger.failures(z.name)):
            if i >= failed_limit:
                break
            failed.append({"path": names.display(rel), **info})
        d = live.get(z.name, {})
        held = owner(r, cfg.redis.prefix, z.name) if not d else None
        state = f"held by the daemon on {held.host} pid {held.pid}, which wrote no status for 30 s (stuck?)" \
            if held else "daemon not running"
        zones[z.name] = {
            "state": d.get("state", state), "lost_reason": d.get("lost_reason"), "daemon": d.get("daemon"),
            "walk_jobs": d.get("walk_jobs"),
            "path": str(z.path),
            "collection": z.collection, "after": z.after, "settling": d.get("settling", 0), "queued": stats["queued"],
            "ingested": stats["done"], "bytes": stats["bytes"], "failed": stats["failed"], "failed_files": failed,
            # handed back after transient errors outlasted the retries (iRODS away): queued again, not failed
            "retrying": int(r.hlen(keys.transient_key(cfg.redis.prefix, z.name))),
            # verified, waiting for after_hold (or a writer to close it) before delete/move
            "after_pending": int(r.zcard(keys.after_key(cfg.redis.prefix, z.name))),
        }
        # of those, held until their objects have min_replicas verified replicas (ingest/replicas.py)
        n_held, held_files = replicas.held(r, cfg.redis.prefix, z.name, failed_limit)
        zones[z.name].update(held=n_held, held_files=[{"path": names.display(p), "reason": why}
                                                      for p, why in held_files])
        if z.completion.by_directory:  # directories waiting for their marker's or manifest's files (completion/)
            zones[z.name]["directories"] = completion_units.describe(r, cfg.redis.prefix, z.name, failed_limit)
            zones[z.name]["awaiting_directory"] = d.get("awaiting_directory", 0)  # settled files held meanwhile
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
    for zone, c in s.get("recounted", {}).items():
        lines.append(f"recounted zone {zone}: queued {c['before']} → {c['after']}")
    if not s["daemons"]:
        lines.append("daemon: not running (no status in Redis for 30 s)")
    for d in s["daemons"]:
        lines.append(daemonstatus.describe(d))
    q = s["queue"]
    lines.append(f"queue {q['name']}: {q['jobs_waiting']} jobs waiting, {q['jobs_running']} running, "
                 f"{q['jobs_failed']} failed")
    for name, z in s["zones"].items():
        by = f" (daemon {z['daemon']})" if z.get("daemon") else ""
        if z.get("lost_reason"):
            by += f" ({z['lost_reason']})"
        wj = z.get("walk_jobs")
        if wj:
            by += (f" (walk as jobs: {wj['chunks_done']} chunks done, {wj['outstanding']} outstanding"
                   + (f", {wj['redone']} redone" if wj["redone"] else "")
                   + (f", on {', '.join(wj['hosts'])}" if wj["hosts"] else "") + ")")
        lines.append(f"zone {name}: {z['state']}{by}; settling {z['settling']}, queued {z['queued']}, "
                     f"ingested {z['ingested']} ({z['bytes']} bytes), failed {z['failed']}"
                     + (f", retrying {z['retrying']}" if z.get("retrying") else "")
                     + (f", awaiting {'delete' if z.get('after') == 'delete' else 'move'} {z['after_pending']}"
                        if z.get("after_pending") else "")
                     + (f" ({z['held']} held for their replicas)" if z.get("held") else "")
                     + (f", waiting for their directory (marker/manifest) {z['awaiting_directory']}"
                        if z.get("awaiting_directory") else "") + "  "
                     f"[{z['path']} → {z['collection']}]")
        for f in z.get("held_files", []):
            lines.append(f"    held: {f['path']}: {f['reason']}")
        for f in z["failed_files"]:
            lines.append(f"    failed: {f['path']}: {f.get('reason')}")
        for f in z.get("directories", []):
            lines.append(f"    directory {f['path']}: {f['state']}: {f['reason']}")
        if z["failed"] > len(z["failed_files"]):
            lines.append(f"    ... and {z['failed'] - len(z['failed_files'])} more (irods-ingestd status --json)")
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    cfg = load(args.config, check_paths=False)
    recounted = recount(cfg) if getattr(args, "recount", False) else None
    s = gather(cfg, failed_limit=10_000 if args.json else 20)
    if recounted is not None:
        s["recounted"] = recounted
    sys.stdout.write(json.dumps(s, indent=2) + "\n" if args.json else render(s))
    return 1 if any(z["failed"] for z in s["zones"].values()) else 0  # exit 1: failed files are listed
