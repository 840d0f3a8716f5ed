"""What happened to one file: the result names, the record a worker keeps, and its journal line."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any

from ..job import FileItem, ZoneSpec
from .metadata import source_path

log = logging.getLogger("irods_ingestd.ingest")

INGESTED = "ingested"
ALREADY = "already-present"
UPDATED = "updated"
FAILED = "failed"
CHANGED = "changed, resettled"
VANISHED = "vanished"
NOT_REGULAR = "not a regular file"
LOCKED = "locked by another worker, resettled"
LOST = "lock lost"
DEFERRED = "deferred"

# result → the key of the batch summary a job returns
SUMMARY_KEYS = {INGESTED: "ingested", ALREADY: "already_present", UPDATED: "updated", FAILED: "failed",
                CHANGED: "changed", VANISHED: "vanished", NOT_REGULAR: "skipped", LOCKED: "locked",
                LOST: "lock_lost", DEFERRED: "deferred"}

_VERBS = {INGESTED: "ingested", UPDATED: "updated", ALREADY: "already present:", FAILED: "failed to ingest",
          CHANGED: "changed since settled, resettled:", VANISHED: "vanished before ingest:",
          NOT_REGULAR: "not a regular file any more:", LOCKED: "locked by another worker, resettled:",
          LOST: "left to another worker:", DEFERRED: "iRODS unavailable, queued again:"}


@dataclass
class FileResult:
    rel: str
    result: str
    irods_path: str = ""
    nbytes: int = 0
    seconds: float = 0.0
    reason: str = ""
    moved_bytes: int = 0
    digest: bytes = b""
    local_st: os.stat_result | None = None  # the landing file as verified (for the after-action)
    kept_as: str = ""  # versions = "keep": where the previous object went


def log_result(zone: ZoneSpec, item: FileItem, res: FileResult, level: int, mid: str) -> None:
    """One journal record per file, with the structured INGEST_* fields."""
    fields = {"INGEST_ZONE": zone.name, "INGEST_PATH": source_path(zone, item.rel),
              "IRODS_PATH": res.irods_path,
              "INGEST_BYTES": res.nbytes if res.result in (INGESTED, UPDATED) else 0,
              "INGEST_SECONDS": round(res.seconds, 3),
              "INGEST_RESULT": res.result if res.result != FAILED else f"failed: {res.reason}"}
    msg = "%s %s" + (" (%s)" if res.reason else "")
    args: tuple[Any, ...] = (_VERBS.get(res.result, res.result), fields["INGEST_PATH"])
    if res.reason:
        args += (res.reason,)
    log.log(level, msg, *args, extra={"message_id": mid, "fields": fields})


def done(zone: ZoneSpec, item: FileItem, res: FileResult, t0: float, level: int, mid: str) -> FileResult:
    res.seconds = time.monotonic() - t0
    log_result(zone, item, res, level, mid)
    return res
