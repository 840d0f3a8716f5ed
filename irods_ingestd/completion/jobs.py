"""Checks of completed directories as RQ jobs: the daemon hands due units to the workers (who see the
landing files and iRODS), like deferred after-actions.

The record (pickled by RQ as a plain dict)::

    {"v": 1, "kind": "unit", "zone": {ZoneSpec record}, "units": ["run1", "deliveries/d7", ...]}

run by ``irods_ingestd.completion.jobs.unit_batch`` (:func:`.check.check_unit` for each unit).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import redis
from rq import Queue

from ..after_jobs import enqueue_batches
from ..job import JOB_VERSION, ZoneSpec
from . import units

log = logging.getLogger(__name__)

UNIT_TASK = "irods_ingestd.completion.jobs.unit_batch"
BATCH = 20


def record(zone: ZoneSpec, names: list[str]) -> dict[str, Any]:
    return {"v": JOB_VERSION, "kind": "unit", "zone": zone.to_record(), "units": list(names)}


def from_record(rec: dict[str, Any]) -> tuple[ZoneSpec, list[str]]:
    if rec.get("v") != JOB_VERSION or rec.get("kind") != "unit":
        raise ValueError(f"not a directory-completion record of version {JOB_VERSION}: upgrade this worker")
    return ZoneSpec.from_record(rec["zone"]), [str(u) for u in rec["units"]]


def enqueue_due(r: redis.Redis, prefix: str, queue: Queue, zones: Iterable[ZoneSpec]) -> int:
    """Hand the due checks of these zones' pending units to the workers; how many units. A job lost after
    this is not fatal: the unit's lease runs out and it comes due again."""
    n = enqueue_batches(queue, UNIT_TASK, BATCH, 3600, [z for z in zones if z.completion.by_directory],
                        lambda zone, k: units.take_due(r, prefix, zone.name, k), record)
    if n:
        log.debug("handed %d completed directories to the workers to check", n)
    return n


def unit_batch(rec: dict[str, Any]) -> dict[str, int]:
    """RQ job: check each completed directory (ingest its marker last, apply its after-action once all of
    it is verified)."""
    from .. import tasks  # the worker's context (a cycle at import time otherwise)
    from .check import check_unit

    zone, names = from_record(rec)
    ctx = tasks.get_context()
    counts: dict[str, int] = {}
    for unit in names:
        try:
            outcome = check_unit(ctx, zone, unit)
        except Exception:  # noqa: BLE001 - one directory's trouble must not stop the others; looked at again
            log.exception("zone %s: checking the completed directory %s/ failed; looked at again later", zone.name,
                          unit, extra={"fields": {"INGEST_ZONE": zone.name}})
            outcome = "error"
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts
