"""The dry run behind `irods-ingestd plan`: walk a zone as `scan` does and say what would happen to each
file, writing nothing to Redis or iRODS.

Every verdict comes from the code that makes the decision for real, never a copy of its rules:

- which names are passed over and why: the walk (`walker.walk_dir` with `report_excluded`) and the zone's
  `NameFilter.explain` (temporary, reserved and excluded names, special files, symlinks, unreadable
  directories);
- a name iRODS cannot hold (too long, not representable): `names.target_for`;
- already in the ledger at this version (ingested, queued, failed): the ledger's packed entries, read with
  HGETALL in one pipeline per step of directories (as the reconcile walk reads them);
- settled or still settling: the zone's own settle policy (`Zone.take_found`, handed a sink that only
  records its answer) with the slack of the zone's watcher backend;
- a file the worker could not read: `ingest.local.check_local` and `open_checked` (opened read-only and
  closed), and for register zones `register_check.readable_by_service_account`;
- what iRODS would do with it (new, an update kept or replaced per `versions`, already present, a
  conflict): :mod:`irods_ingestd.plan_irods`;
- held until its directory is complete (`complete_when = "marker"` or `"manifest"`): the daemon's gate,
  :mod:`irods_ingestd.plan_completion`.

Redis or iRODS out of reach is said, and the walk is listed all the same (as if new to the ledger, or with
the iRODS target unchecked).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import redis

from . import ledger as lg
from . import names
from .config import ZoneConfig
from .ingest import local, usermeta
from .ingest.errors import LocalChanged, NotRegular, PermanentError, Vanished
from .job import FileItem
from .ledger import Ledger, name_field, queued_job, version_bytes
from .reconcile import Found
from .register_check import readable_by_service_account
from .walker import Listing, join, walk_dir
from .watch.poll import PollWatcher
from .watch.select import BACKENDS
from .zone import NullSink, Zone

log = logging.getLogger("irods_ingestd.plan")

# What a file's line says would happen, in the order the plan lists them.
INGEST, UPDATE, PRESENT, CONFLICT = "ingest", "update", "present", "conflict"
SETTLING, HELD, EXCLUDED = "settling", "held", "excluded"
INGESTED, QUEUED, FAILED_ = "ingested", "queued", "failed"
ACTIONS = (INGEST, UPDATE, PRESENT, CONFLICT, SETTLING, HELD, EXCLUDED, INGESTED, QUEUED, FAILED_)
_LEDGER_STATE = {lg.DONE: INGESTED, lg.QUEUED: QUEUED, lg.FAILED: FAILED_}

DIRS_PER_STEP = 64


@dataclass(slots=True)
class Item:
    """One entry of the plan. `irods` is what iRODS would do once the file is ready (for settling files
    too): one of INGEST, UPDATE, PRESENT, CONFLICT, or "" where it was not asked."""

    rel: str
    action: str
    reason: str = ""
    size: int | None = None
    mtime_ns: int | None = None
    target: str = ""
    irods: str = ""
    age: float | None = None  # settling: seconds since the file last changed
    ready_in: float | None = None  # settling: seconds until it is ready if it stays unchanged
    would_fail: bool = False  # the daemon would queue it and the worker list it as failed


@dataclass
class ZonePlan:
    zone: ZoneConfig
    items: list[Item] = field(default_factory=list)
    error: str | None = None  # the zone could not be walked at all
    notes: list[str] = field(default_factory=list)  # what the plan could not know (e.g. units not read)

    def sort(self) -> None:
        order = {a: i for i, a in enumerate(ACTIONS)}
        self.items.sort(key=lambda it: (order[it.action], it.rel))

    def count(self) -> dict[str, int]:
        out: dict[str, int] = dict.fromkeys(ACTIONS, 0)
        for it in self.items:
            out[it.action] += 1
        return out

    def bytes_to_send(self) -> int:
        return sum(it.size or 0 for it in self.items if it.action in (INGEST, UPDATE))

    def failing(self) -> int:
        """Entries that are or would be failures: conflicts, files the worker would fail, failed in the ledger."""
        return sum(1 for it in self.items if it.action in (CONFLICT, FAILED_) or it.would_fail)


class Reach:
    """Redis (read-only use) and whether it answers; a Redis error mid-walk is said once and the plan goes on
    without the ledger."""

    def __init__(self, r: redis.Redis | None, prefix: str) -> None:
        self.ledger = Ledger(r, prefix) if r is not None else None
        self.error: str | None = None if r is not None else "not configured"
        if r is not None:
            try:
                r.ping()
            except redis.RedisError as e:
                self.lost(e)

    def lost(self, e: Exception) -> None:
        self.error = self.error or str(e) or type(e).__name__
        self.ledger = None


class _Sorter(NullSink):
    """A `ZoneSink` that only records the zone's settle decision (ready now, or settling)."""

    def __init__(self) -> None:
        self.ready: set[str] = set()

    def ready_file(self, zone: str, rel: str, size: int, mtime_ns: int) -> None:
        self.ready.add(rel)


class _Idle(PollWatcher):
    """Watches nothing; carries the mtime slack of the zone's own backend (the settle policy needs it)."""

    def __init__(self, slack: float) -> None:
        self.mtime_slack = slack


def zone_for(z: ZoneConfig) -> Zone:
    slack = getattr(BACKENDS.get(z.watcher), "mtime_slack", PollWatcher.mtime_slack)
    return Zone(z, _Idle(float(slack)))


def walk(zone: Zone) -> Iterator[list[Listing]]:
    """The zone's directories, DIRS_PER_STEP at a time (a stack, as the reconcile walk holds it)."""
    stack = [""]
    while stack:
        step: list[Listing] = []
        while stack and len(step) < DIRS_PER_STEP:
            lst = walk_dir(zone.root, stack.pop(), zone.names, zone.follow, report_excluded=True)
            stack.extend(lst.subdirs)
            step.append(lst)
        yield step


def passed_over(step: list[Listing]) -> list[Item]:
    out = []
    for lst in step:
        if lst.error:
            out.append(Item(lst.reldir or ".", EXCLUDED, f"directory not walked: {lst.error}"))
        out += [Item(rel, EXCLUDED, reason) for rel, reason in lst.skipped + lst.excluded]
    return out


def ledger_states(reach: Reach, zone: str, step: list[Listing]) -> dict[str, tuple[str, str]]:
    """rel → (ingested | queued | failed, detail) for the files the ledger holds at this very version."""
    with_files = [lst for lst in step if lst.files]
    if reach.ledger is None or not with_files:
        return {}
    try:
        hashes = reach.ledger.dirs(zone, [lst.reldir for lst in with_files])
    except redis.RedisError as e:
        reach.lost(e)
        return {}
    out: dict[str, tuple[str, str]] = {}
    for lst, entries in zip(with_files, hashes, strict=True):
        for name, size, mtime in lst.files:
            raw = entries.get(name_field(name))
            if raw is not None and raw[1:17] == version_bytes(size, mtime) and raw[:1] in _LEDGER_STATE:
                out[join(lst.reldir, name)] = (_LEDGER_STATE[raw[:1]], queued_job(raw) if raw[:1] == lg.QUEUED else "")
    failed = [rel for rel, (state, _) in out.items() if state == FAILED_]
    if failed and reach.ledger is not None:
        try:
            infos = reach.ledger.r.hmget(reach.ledger.failed_key(zone), [os.fsencode(rel) for rel in failed])
        except redis.RedisError as e:
            reach.lost(e)
            infos = [None] * len(failed)
        for rel, info in zip(failed, infos, strict=True):
            out[rel] = (FAILED_, _failure_reason(info))
    return out


def _failure_reason(info: bytes | None) -> str:
    try:
        return str(json.loads(info or b"{}").get("reason", ""))
    except ValueError:
        return ""


def unreadable(zone: Zone, rel: str, size: int, mtime_ns: int) -> str | None:
    """Why the worker would fail to read this file (the worker's own checks), or None."""
    try:
        loc = local.check_local(zone.spec, FileItem(rel, size, mtime_ns))
        if zone.cfg.mode == "register":
            realpath = os.path.realpath(loc.path)
            refusal = names.register_refusal(realpath)
            if refusal:
                return refusal
            if not readable_by_service_account(realpath, loc.st):
                return "the iRODS service account cannot read it (register mode: the server reads the file)"
            return None
        os.close(local.open_checked(loc))
    except PermanentError as e:
        return str(e)
    except (LocalChanged, Vanished, NotRegular):
        return None  # changed meanwhile: the next look (the daemon's settler) decides
    return None


def classify(zone: Zone, reach: Reach, step: list[Listing], now: float) -> list[Item]:
    """Every entry of these directories but the iRODS verdict (see plan_irods.judge)."""
    items = passed_over(step)
    states = ledger_states(reach, zone.name, step)
    found: list[Found] = []
    for lst in step:
        for name, size, mtime in lst.files:
            rel = join(lst.reldir, name)
            try:
                target = names.target_for(zone.cfg.collection, rel)
            except names.BadName as e:
                items.append(Item(rel, EXCLUDED, f"bad name: {e}", size, mtime, would_fail=True))
                continue
            state = states.get(rel)
            if state is not None:
                detail = {INGESTED: "in the ledger as ingested",
                          QUEUED: f"in the ledger as queued (job {state[1] or 'unnamed'})",
                          FAILED_: f"in the ledger as failed: {state[1]}"}[state[0]]
                items.append(Item(rel, state[0], detail, size, mtime, target.path))
                continue
            why = unreadable(zone, rel, size, mtime) or usermeta.problem(zone.spec, FileItem(rel, size, mtime), target)
            if why:
                items.append(Item(rel, EXCLUDED, why, size, mtime, target.path, would_fail=True))
                continue
            found.append(Found(rel, size, mtime))
    sorter = _Sorter()
    zone.take_found(found, sorter)
    settle = zone.cfg.settle
    for f in found:
        target = names.target_for(zone.cfg.collection, f.rel)
        if f.rel in sorter.ready:
            items.append(Item(f.rel, INGEST, "", f.size, f.mtime_ns, target.path))
            continue
        age = max(now - f.mtime_ns / 1e9, 0.0)
        ready_in = settle - age if age < settle else settle  # past settle: the settler confirms it unchanged
        items.append(Item(f.rel, SETTLING, f"changed {age:.1f}s ago (settle {settle:g}s)", f.size, f.mtime_ns,
                          target.path, age=round(age, 3), ready_in=round(ready_in, 3)))
    return items


def plan_zone(z: ZoneConfig, reach: Reach, judge: Any = None, clock: Any = time.time) -> ZonePlan:
    """The zone's plan; `judge(zone, items)` fills in the iRODS verdicts of each step's files."""
    plan = ZonePlan(z)
    if not os.path.isdir(z.path):
        plan.error = f"{z.path} is not a directory (missing or unmounted?)"
        return plan
    zone = zone_for(z)
    for step in walk(zone):
        items = classify(zone, reach, step, clock())
        if judge is not None:
            judge(zone, items)
        plan.items += items
    plan.sort()
    return plan
