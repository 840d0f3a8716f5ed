"""The `[walk]` table: a zone's walk split into directory-chunk jobs that walk workers run (off by default).

    [walk]
    jobs = true            # full walks of the daemon are run as jobs when a walk worker listens
    queue = "irods-ingestd-walk"   # default: [queue].name + "-walk"
    chunk = 100            # directories a job lists at most
    chunk_files = 20000    # a job stops listing (and hands back the rest) after this many entries
    chunk_timeout = "5m"   # a chunk's job that has not ended by then is lost: its chunk is run again
    retries = 3            # a chunk lost this many times ends the walk as incomplete (logged)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .config_parse import QUEUE_NAME, Checker, parse_duration

KEYS: frozenset[str] = frozenset({"jobs", "queue", "chunk", "chunk_files", "chunk_timeout", "retries"})


@dataclass(frozen=True)
class WalkConfig:
    jobs: bool = False
    queue: str = "irods-ingestd-walk"
    chunk: int = 100
    chunk_files: int = 20_000
    chunk_timeout: float = 300.0
    retries: int = 3


def check(c: Checker, data: Mapping[str, Any], queue_name: str = "irods-ingestd") -> WalkConfig:
    raw = c.get("top level", data, "walk", dict, {})
    c.unknown("[walk]", raw, set(KEYS))
    d = WalkConfig()
    w = WalkConfig(
        jobs=c.get("[walk]", raw, "jobs", bool, d.jobs),
        queue=c.get("[walk]", raw, "queue", str, f"{queue_name}-walk"),
        chunk=c.get("[walk]", raw, "chunk", int, d.chunk),
        chunk_files=c.get("[walk]", raw, "chunk_files", int, d.chunk_files),
        chunk_timeout=c.conv("[walk]", raw, "chunk_timeout", parse_duration, d.chunk_timeout),
        retries=c.get("[walk]", raw, "retries", int, d.retries),
    )
    if not QUEUE_NAME.match(w.queue):
        c.problems.append(f"[walk].queue: {w.queue!r} may hold only letters, digits and _ . : -")
    elif w.queue == queue_name:
        c.problems.append(f"[walk].queue: {w.queue!r} is the ingest queue; walk jobs need a queue of their own")
    for key in ("chunk", "chunk_files"):
        if getattr(w, key) < 1:
            c.problems.append(f"[walk].{key}: must be at least 1")
    if w.chunk_timeout < 1:
        c.problems.append("[walk].chunk_timeout: must be at least 1 second")
    if w.retries < 0:
        c.problems.append("[walk].retries: must not be negative")
    return w
