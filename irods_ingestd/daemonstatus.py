"""The daemon's status record: one Redis key per daemon, `{prefix}:daemon:{host}:{pid}`, TTL 30 s,
written every second and deleted when the daemon stops; `irods-ingestd status` reads them all here
(`read_all`, `zones_run`, `describe`): this module alone writes and reads the record.

Words mean one thing each, here and in `status`: *settling* (waiting to be unchanged for `settle`),
*ready* (settled, waiting for room in the backlog), *queued* (in the ledger as queued: waiting for or
in a worker; the same number on the daemon's line and the zones' lines), *ingested*, *failed*; what
the daemon handed to the queue since it started is *sent to the queue since start*.
"""

from __future__ import annotations

import json
import os
import time
from typing import TYPE_CHECKING, Any

import redis

from . import __version__, keys

if TYPE_CHECKING:
    from .daemon import Daemon

STATUS_TTL = 30


def status_key(prefix: str, host: str, pid: int) -> str:
    return keys.status_key(prefix, host, pid)


def read_all(r: redis.Redis, prefix: str) -> list[dict[str, Any]]:
    """Every daemon's status record (sorted by host and pid)."""
    out = []
    for key in r.scan_iter(keys.status_pattern(prefix)):
        raw = r.get(key)
        if raw:
            try:
                out.append(json.loads(raw))
            except ValueError:
                continue
    return sorted(out, key=lambda d: (str(d.get("host")), int(d.get("pid") or 0)))


def zones_run(daemons: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Zone → its entry in the record of the daemon that runs it, with `daemon` naming that daemon."""
    live: dict[str, dict[str, Any]] = {}
    for d in daemons:
        for name, z in d.get("zones", {}).items():
            live[name] = {**z, "daemon": f"{d.get('host')} pid {d.get('pid')}"}
    return live


def describe(d: dict[str, Any]) -> str:
    """One daemon's line in `status`."""
    return f"daemon: {d['host']} pid {d['pid']} version {d['version']}: {d.get('line', '')}"


def build(d: Daemon) -> dict[str, Any]:
    zones = {}
    for name, zs in d.zones.items():
        zones[name] = {
            "state": zs.state, "path": zs.root, "collection": zs.cfg.collection, "mode": zs.cfg.mode,
            "settling": d.settler.count(name), "walking": zs.walk is not None,
            "awaiting_directory": len(zs.gate) if zs.gate is not None else 0,  # settled, directory not complete
            "walks": zs.walks_done, "last_walk_seconds": round(zs.last_walk_seconds, 3),
            "lost_reason": zs.lost_reason or None,
        }
        run = d.walk_jobs.runs.get(name) if d.walk_jobs is not None else None
        if run is not None:  # the walk in progress runs as jobs on walk workers (walk_sched.py)
            zones[name]["walk_jobs"] = {"chunks_done": run.chunks, "outstanding": run.outstanding,
                                        "redone": run.redone, "hosts": sorted(run.hosts)}
    return {
        "host": d.host, "pid": os.getpid(), "version": __version__, "started": d.started,
        "updated": time.time(), "zones": zones, "ready_waiting": len(d.ready),
        "backlog_full": d.backlog_full(), "redis_down": d.health.down_since is not None,
        "sent_since_start": d.counters.sent, "skipped": d.counters.skipped, "overflows": d.counters.overflows,
        "recounting": bool(d.recounts),
    }


def line(d: Daemon) -> str:
    states: dict[str, int] = {}
    for zs in d.zones.values():
        states[zs.state] = states.get(zs.state, 0) + 1
    st = ", ".join(f"{n} {s}" for s, n in sorted(states.items())) or "no zones"
    text = f"zones: {st}; settling {len(d.settler)}; ready {len(d.ready)}; sent to the queue since start " \
           f"{d.counters.sent}"
    try:
        queued = done = failed = 0
        for name in d.zones:
            s = d.ledger.stats(name)
            queued += s["queued"]
            done += s["done"]
            failed += s["failed"]
        text += f"; queued {queued}; ingested {done}; failed {failed}"
    except redis.RedisError:
        text += "; Redis down"
    if d.backlog_full():
        text += f"; waiting: backlog full ({len(d.ready)} ready)"
    return text


def publish(d: Daemon, text: str) -> None:
    data = build(d)
    data["line"] = text
    d.r.set(status_key(d.cfg.redis.prefix, d.host, os.getpid()), json.dumps(data), ex=STATUS_TTL)


def withdraw(d: Daemon) -> None:
    d.r.delete(status_key(d.cfg.redis.prefix, d.host, os.getpid()))
