"""Ingest one batch of settled files into iRODS: the worker's real work, one step a module.

* :mod:`.batch`: the batch loop: per file its lock, retries, ledger record and journal line.
* :mod:`.attempt`: one try at one file: look, judge what iRODS holds, transfer, put in place.
* :mod:`.transfer`: put (copy, verify in the server's scheme, AVUs) and register.
* :mod:`.catalog`: the iRODS adapter (look-ups, renames, checksums, collections, AVU calls, bulk rows): the only
  module that sends raw API requests (:mod:`.transfer` streams the bytes of a copy).
* :mod:`.local`: the landing file: still the job's version, where it leads, its digests.
* :mod:`.metadata` and ``extractors/``: the AVUs (extractors chosen by name, see :mod:`irods_ingestd.registry`).
* :mod:`.after`, :mod:`.after_run` and ``actions/``: delete/move of verified files, safely.
* :mod:`.errors`, :mod:`.results`, :mod:`.context`: what can go wrong, what happened, what a worker keeps.
"""

from __future__ import annotations

from .after_run import run_after, run_after_batch
from .batch import ingest_batch, ingest_file, prefetch
from .context import IngestContext
from .errors import (
    Conflict,
    LocalChanged,
    LockLost,
    NotRegular,
    PermanentError,
    StaleLookup,
    Vanished,
    backoff_delay,
    describe,
    is_transient,
)
from .results import (
    ALREADY,
    CHANGED,
    DEFERRED,
    FAILED,
    INGESTED,
    LOCKED,
    LOST,
    NOT_REGULAR,
    UPDATED,
    VANISHED,
    FileResult,
)

__all__ = [
    "ALREADY", "CHANGED", "DEFERRED", "FAILED", "INGESTED", "LOCKED", "LOST", "NOT_REGULAR", "UPDATED",
    "VANISHED", "Conflict", "FileResult", "IngestContext", "LocalChanged", "LockLost", "NotRegular",
    "PermanentError", "StaleLookup", "Vanished", "backoff_delay", "describe", "ingest_batch", "ingest_file",
    "is_transient", "prefetch", "run_after", "run_after_batch",
]
