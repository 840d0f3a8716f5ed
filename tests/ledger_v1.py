"""The ledger's first layout, written as the code before buckets wrote it: one hash a directory whatever its
size, a done entry of 25 bytes (`D` size mtime_ns and 8 bytes of the SHA-256). Shared by the migration tests
and the bench (bench/ledger_bytes.py) that measures it."""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import Any

from irods_ingestd import keys
from irods_ingestd.ledger import name_field, split_rel

V1_DONE = struct.Struct(">cQqQ")


def v1_done_value(size: int, mtime_ns: int, sha256: bytes = b"\x01" * 32) -> bytes:
    return V1_DONE.pack(b"D", size, mtime_ns, int.from_bytes(sha256[:8], "big"))


def write_v1_done(r: Any, zone: str, files: Iterable[tuple[str, int, int]], prefix: str = "ingestd",
                  chunk: int = 5000) -> int:
    """Files as done in the first layout (HSET over a pipeline), with the `done`/`bytes` counters."""
    pipe = r.pipeline(transaction=False)
    n = nbytes = 0
    for rel, size, mtime in files:
        d, name = split_rel(rel)
        pipe.hset(keys.dir_key(prefix, zone, d), name_field(name), v1_done_value(size, mtime))
        n += 1
        nbytes += size
        if n % chunk == 0:
            pipe.execute()
    pipe.hincrby(keys.stats_key(prefix, zone), "done", n)
    pipe.hincrby(keys.stats_key(prefix, zone), "bytes", nbytes)
    pipe.execute()
    return n
