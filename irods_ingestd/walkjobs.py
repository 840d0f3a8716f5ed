"""Walk jobs, the worker's side: list one chunk of a zone's directories and hand back what differs.

``irods_ingestd.walkjobs.walk_chunk(record)`` is what the daemon's walk scheduler (walk_sched.py) puts on
the walk queue (`[walk].queue`, run by `irods-ingestd worker --role walk`). A job lists the chunk's
directories with `walk_dir` (on whichever host runs it: it needs only the zone's file system and Redis),
compares them with the ledger as the daemon's own walk does (`Reconciler.compare`: only files the ledger
does not hold at this size and mtime, or whose ingest job was lost), and commits one result, atomically:
the files found, the skipped entries, the subdirectories it saw and, if it stopped after `chunk_files`
entries, the directories of its chunk it did not list. The daemon drains the results, settles and queues
the files, and makes the directories new chunks (breadth-first). The job only finds; it queues nothing.

The commit removes the chunk from the walk's outstanding chunks if, and only if, the chunk is still
assigned to this job: a job that was given up on (its worker was killed, its chunk re-assigned) or whose
walk ended commits nothing, so a chunk's findings arrive once.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from typing import Any

from rq import get_current_job

from . import keys
from .filters import NameFilter
from .queue import Enqueuer
from .reconcile import Reconciler, Walk
from .walker import Listing, walk_dir
from .worker import hostname

log = logging.getLogger(__name__)

FUNC = "irods_ingestd.walkjobs.walk_chunk"
RESULTS_TTL = 86400  # a walk's keys outlive a daemon that died during it by this long at most
HANG_ENV = "INGESTD_TEST_WALK_HANG"  # tests: a job holding this directory leaves hang_marker() and hangs

# KEYS: the walk's chunks hash, its results list. ARGV: chunk id, the value it must still have (this job's
# assignment), the result (JSON), the TTL. Returns 1 if committed, 0 if the chunk is no longer this job's.
COMMIT_LUA = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('RPUSH', KEYS[2], ARGV[3])
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[4]))
return 1
"""


@dataclasses.dataclass(frozen=True)
class Chunk:
    """One job's directories and where its result goes."""

    zone: str
    root: str
    follow: bool
    prefix: str
    walk: str
    chunk: str
    dirs: tuple[str, ...]
    max_files: int
    assigned: str  # the value of the chunk's entry while this job holds it

    def to_record(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["dirs"] = list(self.dirs)
        return d

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> Chunk:
        return cls(zone=rec["zone"], root=rec["root"], follow=bool(rec["follow"]), prefix=rec["prefix"],
                   walk=rec["walk"], chunk=rec["chunk"], dirs=tuple(rec["dirs"]), max_files=int(rec["max_files"]),
                   assigned=rec["assigned"])


def list_chunk(ch: Chunk, names: NameFilter, rec: Reconciler) -> dict[str, Any]:
    """List the chunk's directories (stopping after max_files entries) and compare them with the ledger."""
    listings: list[Listing] = []
    seen = 0
    rest: list[str] = []
    for i, d in enumerate(ch.dirs):
        if seen >= ch.max_files:
            rest = list(ch.dirs[i:])
            break
        lst = walk_dir(ch.root, d, names, ch.follow)
        seen += len(lst.files) + len(lst.subdirs) + len(lst.skipped)
        listings.append(lst)
    walk = Walk(stack=[])
    found = rec.compare(ch.zone, walk, listings)
    skipped = [s for lst in listings for s in lst.skipped]
    skipped += [(lst.reldir or ".", lst.error) for lst in listings if lst.error]
    return {"found": [(f.rel, f.size, f.mtime_ns) for f in found], "skipped": skipped,
            "subdirs": [s for lst in listings for s in lst.subdirs], "rest": rest,
            "dirs": walk.dirs, "files": walk.files, "new": walk.new, "lost": walk.lost, "host": hostname()}


_reconcilers: dict[int, Reconciler] = {}


def _reconciler(ctx: Any) -> Reconciler:
    """One per process context: the ledger, and the ingest queue's lost-job check (as the daemon's)."""
    got = _reconcilers.get(id(ctx))
    if got is None:
        cfg = ctx.config.queue
        enq = Enqueuer(ctx.redis, ctx.ledger, cfg)
        got = Reconciler(ctx.ledger, stale_queued=4 * cfg.job_timeout + 3600, lost_jobs=enq.lost_jobs)
        _reconcilers.clear()
        _reconcilers[id(ctx)] = got
    return got


def walk_chunk(record: dict[str, Any]) -> dict[str, Any]:
    """RQ job: list one chunk of a walk and commit its result for the daemon; returns counts."""
    from .tasks import get_context

    ch = Chunk.from_record(record)
    ctx = get_context()
    r = ctx.redis
    chunks_key = keys.walk_chunks_key(ch.prefix, ch.zone, ch.walk)
    job = get_current_job()
    if r.hget(chunks_key, ch.chunk) != ch.assigned.encode():
        log.info("walk %s of zone %s: chunk %s is no longer this job's; nothing to do", ch.walk, ch.zone, ch.chunk)
        return {"committed": False}
    try:
        zcfg = ctx.config.zone(ch.zone)
    except KeyError:
        raise LookupError(f"walk job {job.id if job else '?'}: zone {ch.zone!r} is not in this worker's config "
                          f"({ctx.config.source}): cannot tell which names it ingests") from None
    t0 = time.monotonic()
    _test_hang(ch)
    result = list_chunk(ch, NameFilter.for_zone(zcfg), _reconciler(ctx))
    result["chunk"] = ch.chunk
    result["seconds"] = round(time.monotonic() - t0, 3)
    ok = r.eval(COMMIT_LUA, 2, chunks_key, keys.walk_results_key(ch.prefix, ch.zone, ch.walk), ch.chunk,
                ch.assigned, json.dumps(result), RESULTS_TTL)
    log.debug("walk %s of zone %s: chunk %s: %d dirs, %d files, %d new%s", ch.walk, ch.zone, ch.chunk,
              result["dirs"], result["files"], result["new"], "" if ok else " (not committed: reassigned)")
    return {"committed": bool(ok), "dirs": result["dirs"], "files": result["files"], "new": result["new"]}


def _test_hang(ch: Chunk) -> None:
    hang = os.environ.get(HANG_ENV)
    if hang is not None and hang in ch.dirs:
        with open(hang_marker(ch.root, hang), "w"):
            pass
        time.sleep(3600)


def hang_marker(root: str, reldir: str) -> str:
    """Beside the zone, not in it: the file a hanging test job leaves."""
    return os.path.join(os.path.dirname(root.rstrip("/")), reldir.replace("/", "_") + ".hung")
