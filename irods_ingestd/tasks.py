"""The RQ job function and the worker process' context.

``irods_ingestd.tasks.ingest_batch(record)`` is what the daemon enqueues (see :mod:`irods_ingestd.job`).
It finds its context (config, iRODS session holder, ledger) in a process-global that
:func:`irods_ingestd.worker.run_worker` sets at start; under a plain ``rq worker`` it loads the default
config (``$IRODS_INGESTD_CONFIG`` or /etc/irods-ingestd/config.toml) on the first job.
"""

from __future__ import annotations

import atexit
import logging
import threading

from . import after_jobs, ingest
from . import config as config_mod
from .config import Config
from .irods_session import SessionHolder
from .job import Batch
from .ledger import Ledger
from .redisconn import connect

log = logging.getLogger(__name__)

_context: ingest.IngestContext | None = None
_context_lock = threading.Lock()


def make_context(config: Config) -> ingest.IngestContext:
    r = connect(config.redis)
    return ingest.IngestContext(config=config, sessions=SessionHolder(config.irods),
                                ledger=Ledger(r, config.redis.prefix), redis=r)


def set_context(ctx: ingest.IngestContext | None) -> ingest.IngestContext | None:
    """Install the process' context (None to drop it); returns the previous one."""
    global _context
    with _context_lock:
        prev, _context = _context, ctx
    return prev


def get_context() -> ingest.IngestContext:
    global _context
    with _context_lock:
        if _context is None:
            _context = make_context(config_mod.load())
            atexit.register(_context.sessions.cleanup)
        return _context


def ingest_batch(record: dict) -> dict:
    """RQ job: ingest one batch; returns counts (ingested, already_present, updated, failed, changed, ...)."""
    batch = Batch.from_record(record)
    ctx = get_context()
    zone = batch.zone
    try:
        configured = ctx.config.zone(zone.name)
    except KeyError:
        configured = None
    if configured is not None and (str(configured.path) != zone.root or configured.collection != zone.collection):
        log.warning("job %s describes zone %s as %s → %s; this worker's config says %s → %s; following the job",
                    batch.id, zone.name, zone.root, zone.collection, configured.path, configured.collection)
    summary = ingest.ingest_batch(ctx, batch)
    log.debug("batch %s of zone %s: %s", batch.id, zone.name, summary)
    return summary


def retry_failed(config: Config, zone: str | None = None, ctx: ingest.IngestContext | None = None) -> int:
    """Re-queue the ledger's failed files (all zones, or one): a Redis-only ledger operation
    (:meth:`Ledger.retry_failed`). Returns how many."""
    ledger = ctx.ledger if ctx is not None else Ledger(connect(config.redis), config.redis.prefix)
    return ledger.retry_failed([zone] if zone else [z.name for z in config.zones])


def after_batch(record: dict) -> dict:
    """RQ job: the deferred after-actions (delete/move) of verified files whose hold is over."""
    zone, items = after_jobs.from_record(record)
    return ingest.run_after_batch(get_context(), zone, items)
