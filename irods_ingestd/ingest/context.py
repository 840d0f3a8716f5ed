"""What a worker process keeps between jobs."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

from ..config import Config
from ..irods_session import SessionHolder
from ..ledger import Ledger
from .catalog import Obj


@dataclass
class IngestContext:
    config: Config
    sessions: SessionHolder
    ledger: Ledger
    redis: redis.Redis
    host: str = field(default_factory=socket.gethostname)
    sleep: Callable[[float], Any] = time.sleep
    known_collections: set[str] = field(default_factory=set)
    hash_scheme: str | None = None  # the server's checksum scheme, learnt from its first answer
    # (collection, name) → what one query per collection found for a batch's files (see batch.prefetch)
    prefetched: dict[tuple[str, str], dict[str, Obj]] = field(default_factory=dict)
    resource_ids: dict[str, str] = field(default_factory=dict)  # resource name → id (bulk register rows)
    collection_avus: dict[str, tuple[int, ...]] = field(default_factory=dict)  # collection → its directory
    # sidecar (device, inode, size, mtime) whose AVUs it was given (see usermeta.apply_dir_sidecar)
    access_ready: dict[str, float] = field(default_factory=dict)  # zone collection → when its inherit and ACLs
    # were found in place (monotonic; access.py looks again after access.RECHECK)
    provenance_written: set[str] = field(default_factory=set)  # zones whose collection has our provenance
