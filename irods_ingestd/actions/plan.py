"""`irods-ingestd plan [--zone Z] [--json]`: a dry run. Walks the zones as `scan` does and prints what
would be ingested where, what is settling, what is passed over and why, what the ledger already holds and
what would be a conflict in iRODS, then one summary line per zone. Writes nothing to Redis or iRODS (see
:mod:`irods_ingestd.planner` and :mod:`irods_ingestd.plan_irods`); Redis or iRODS out of reach is said and
the walk listed all the same.

Exit codes: 0 nothing would fail and the plan is complete; 1 the plan lists failures (conflicts, files the
worker would fail, files failed in the ledger), or is incomplete (Redis or iRODS did not answer, a zone's
directory is missing); 2 bad usage or configuration.

`--json` prints one object (documented in the README, stable; `plan_version` changes if a field's meaning
does):

    {"plan_version": 1, "redis": {"ok", "error"}, "irods": {"ok", "error"},
     "zones": {NAME: {"path", "collection", "mode", "resource", "versions", "settle", "error", "notes",
                      "counts": {ACTION: n}, "bytes", "files": [FILE, ...]}}}

where FILE is {"path", "action", "reason", "size", "mtime_ns", "target", "irods", "age", "ready_in",
"would_fail"} and ACTION one of ingest, update, present, conflict, settling, held, excluded, ingested, queued,
failed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Any

from .. import names, plan_completion
from ..config import Config, ConfigError, load
from ..plan_irods import IrodsReach, judge
from ..planner import Item, Reach, ZonePlan, plan_zone

PLAN_VERSION = 1


def _zones(cfg: Config, wanted: list[str] | None) -> Config:
    if not wanted:
        return cfg
    zones = tuple(z for z in cfg.zones if z.name in wanted)
    missing = set(wanted) - {z.name for z in zones}
    if missing:
        raise ConfigError(cfg.source, [f"no zone named {m!r}" for m in sorted(missing)])
    return dataclasses.replace(cfg, zones=zones)


def make_plans(cfg: Config) -> tuple[list[ZonePlan], Reach, IrodsReach]:
    from ..irods_session import make_session
    from ..redisconn import connect

    try:
        r = connect(cfg.redis)
    except Exception as e:  # noqa: BLE001 - e.g. no Sentinel answers: said, and the walk listed
        reach = Reach(None, cfg.redis.prefix)
        reach.error = str(e)
    else:
        reach = Reach(r, cfg.redis.prefix)
    irods = IrodsReach(lambda: make_session(cfg.irods))
    plans = []
    try:
        for z in cfg.zones:
            p = plan_zone(z, reach, lambda zone, items: judge(irods, zone, items))
            note = plan_completion.apply(p, reach.ledger.r if reach.ledger is not None else None, cfg.redis.prefix)
            if note:
                p.notes.append(note)
            p.sort()
            plans.append(p)
    finally:
        irods.close()
    return plans, reach, irods


def _file(it: Item) -> dict[str, Any]:
    return {"path": names.display(it.rel), "action": it.action, "reason": it.reason, "size": it.size,
            "mtime_ns": it.mtime_ns, "target": it.target, "irods": it.irods or None, "age": it.age,
            "ready_in": it.ready_in, "would_fail": it.would_fail}


def as_json(plans: list[ZonePlan], reach: Reach, irods: IrodsReach) -> dict[str, Any]:
    zones = {}
    for p in plans:
        z = p.zone
        zones[z.name] = {
            "path": str(z.path), "collection": z.collection, "mode": z.mode, "resource": z.resource,
            "versions": z.versions, "settle": z.settle, "error": p.error, "notes": p.notes, "counts": p.count(),
            "bytes": p.bytes_to_send(), "files": [_file(it) for it in p.items],
        }
    return {"plan_version": PLAN_VERSION, "redis": {"ok": reach.error is None, "error": reach.error},
            "irods": {"ok": irods.error is None, "error": irods.error}, "zones": zones}


def _line(it: Item) -> str:
    path = names.display(it.rel)
    size = f" ({it.size} bytes)" if it.size is not None else ""
    if it.action in ("ingest", "update", "present", "conflict"):
        head = f"{path} → {it.target}{size}"
    else:
        head = f"{path}{size}"
    if it.action == "settling" and it.ready_in is not None:
        head += f", ready in {it.ready_in:.1f}s if unchanged"
    return f"  {it.action:<9} {head}" + (f": {it.reason}" if it.reason else "")


def summary(p: ZonePlan) -> str:
    c = p.count()
    parts = [f"{c['ingest']} to ingest", f"{c['update']} updates ({p.bytes_to_send()} bytes to send)",
             f"{c['present']} present", f"{c['conflict']} conflicts", f"{c['settling']} settling",
             *([f"{c['held']} held"] if c["held"] else []),
             f"{c['excluded']} excluded", f"{c['ingested']} ingested", f"{c['queued']} queued",
             f"{c['failed']} failed"]
    return f"zone {p.zone.name}: " + (f"not walked: {p.error}" if p.error else ", ".join(parts))


def render(plans: list[ZonePlan], reach: Reach, irods: IrodsReach) -> str:
    lines = []
    if reach.error:
        lines.append(f"Redis not read ({reach.error}): the ledger is unknown, every file is listed as if new")
    if irods.error:
        lines.append(f"iRODS not asked ({irods.error}): targets not checked for conflicts")
    for p in plans:
        z = p.zone
        lines.append(f"zone {z.name}: {z.path} → {z.collection} ({z.mode}, "
                     f"{'resource ' + z.resource if z.resource else 'default resource'}, versions {z.versions}, "
                     f"settle {z.settle:g}s)")
        lines += [f"  ({n})" for n in p.notes]
        lines += [_line(it) for it in p.items]
    lines += [summary(p) for p in plans]
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    cfg = _zones(load(args.config, check_paths=False), getattr(args, "zone", None))
    plans, reach, irods = make_plans(cfg)
    if args.json:
        sys.stdout.write(json.dumps(as_json(plans, reach, irods), indent=2) + "\n")
    else:
        sys.stdout.write(render(plans, reach, irods))
    incomplete = reach.error is not None or irods.error is not None or any(p.error for p in plans)
    return 1 if incomplete or any(p.failing() for p in plans) else 0
