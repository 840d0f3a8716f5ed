"""Deferred after-actions as RQ jobs: the daemon hands due ones to the workers (who see the landing files).

The record (pickled by RQ as a plain dict, like the ingest job's)::

    {"v": 1, "kind": "after", "zone": {ZoneSpec record}, "files": [{Verified as a dict}, ...]}

run by ``irods_ingestd.tasks.after_batch``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import asdict
from typing import Any, TypeVar

import redis
from rq import Queue

from . import registry
from .ingest import after
from .job import JOB_VERSION, ZoneSpec

log = logging.getLogger(__name__)

AFTER_TASK = "irods_ingestd.tasks.after_batch"
BATCH = 200
T = TypeVar("T")


def record(zone: ZoneSpec, items: list[after.Verified]) -> dict[str, Any]:
    return {"v": JOB_VERSION, "kind": "after", "zone": zone.to_record(), "files": [asdict(v) for v in items]}


def from_record(rec: dict[str, Any]) -> tuple[ZoneSpec, list[after.Verified]]:
    if rec.get("v") != JOB_VERSION or rec.get("kind") != "after":
        raise ValueError(f"not an after-action record of version {JOB_VERSION}: upgrade this worker")
    return ZoneSpec.from_record(rec["zone"]), [after.Verified.load(f) for f in rec["files"]]


def enqueue_due(r: redis.Redis, prefix: str, queue: Queue, zones: Iterable[ZoneSpec]) -> int:
    """Move the due after-actions of these zones into jobs; how many files. A job lost after this is not
    fatal: the file keeps its ledger entry and stays in the landing zone (its copy is verified)."""
    n = enqueue_batches(queue, AFTER_TASK, BATCH, 600, [z for z in zones if z.after in registry.AFTER_ACTIONS],
                        lambda zone, k: after.take_due(r, prefix, zone.name, k), record)
    if n:
        log.debug("handed %d due after-actions to the workers", n)
    return n


def enqueue_batches(queue: Queue, task: str, batch: int, job_timeout: int, zones: Iterable[ZoneSpec],
                    take: Callable[[ZoneSpec, int], list[T]], make: Callable[[ZoneSpec, list[T]], dict[str, Any]]
                    ) -> int:
    """For each zone, take its due items `batch` at a time (`take(zone, batch)`) and enqueue each batch as one
    RQ job of `task` with the record `make` gives; how many items. Used for deferred after-actions and
    completed directories (completion/jobs.py)."""
    n = 0
    for zone in zones:
        while items := take(zone, batch):
            queue.enqueue(task, make(zone, items), job_timeout=job_timeout, result_ttl=60)
            n += len(items)
            if len(items) < batch:
                break
    return n
