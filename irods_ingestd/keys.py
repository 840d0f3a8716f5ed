"""The Redis key schema: every key name the package uses is built here and nowhere else.

All keys start with the configured prefix `{p}` (`[redis].prefix`, `ingestd` by default):

- ledger (`ledger.py`): `{p}:l:{zone}:{dirhash}` one hash per landing directory (above 128 files, its buckets
  `{p}:l:{zone}:{dirhash}.{i}`, named by the ledger's scripts: `ledger_lua.py`), `{p}:s:{zone}` counters,
  `{p}:f:{zone}` failed files, `{p}:r:{zone}` files handed back to be settled again, `{p}:t:{zone}`
  transient failures, `{p}:rc:{zone}` / `{p}:rcs:{zone}` a recount in progress;
- `{p}:eg:{zone}`: the zone's enqueue generation, bumped by enqueuers only (`queue.py`);
- `{p}:lock:{zone}:{pathhash}`: a worker's lock on one file (`locks.py`);
- `{p}:after:{zone}`: deferred after-actions, a sorted set by due time (`ingest/after.py`);
- `{p}:unit:{zone}`, `{p}:unitinfo:{zone}`, `{p}:unitdone:{zone}`, `{p}:unitwait:{zone}`,
  `{p}:unitheld:{zone}:{hash}`: completed directories (marker/manifest zones), their state and their verified
  files (`completion/units.py`);
- `{p}:held:{zone}`: files whose delete/move waits for their replicas, and why (`ingest/replicas.py`);
- `{p}:owner:{zone}`: the daemon that runs the zone (`daemonlock.py`);
- `{p}:claims`: where each running daemon's zones really are, and their collections (`daemonclaims.py`);
- `{p}:daemon:{host}:{pid}`: a daemon's status record (`daemonstatus.py`);
- `{p}:epoch`: a marker that tells a Redis that lost its data (`redishealth.py`);
- `{p}:wk:{zone}:{walk}:c` / `:r`: a walk run as jobs (`walk_sched.py`, `walkjobs.py`): its outstanding
  chunks (chunk id → RQ job id) and the results the chunks' jobs committed, for the daemon to drain.

Directory and path hashes are BLAKE2b of the path's bytes (surrogateescape), so any name fits a key.
"""

from __future__ import annotations

import hashlib
import os


def _glob_escape(s: str) -> str:
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in s)


# -- the ledger ---------------------------------------------------------------------------------------
def dir_key(p: str, zone: str, reldir: str) -> str:
    return f"{p}:l:{zone}:" + hashlib.blake2b(os.fsencode(reldir), digest_size=10).hexdigest()


def dir_key_prefix(p: str) -> str:
    """What every directory hash's key starts with (`{p}:l:`), zone and hash follow."""
    return f"{p}:l:"


def dir_pattern(p: str, zone: str | None = None) -> str:
    """A SCAN pattern of a zone's directory hashes, or of every zone's (glob characters escaped)."""
    esc = _glob_escape(p)
    return f"{esc}:l:{zone}:*" if zone else f"{esc}:l:*"


def stats_key(p: str, zone: str) -> str:
    return f"{p}:s:{zone}"


def failed_key(p: str, zone: str) -> str:
    return f"{p}:f:{zone}"


def resettle_key(p: str, zone: str) -> str:
    return f"{p}:r:{zone}"


def transient_key(p: str, zone: str) -> str:
    return f"{p}:t:{zone}"


def recount_key(p: str, zone: str) -> str:
    return f"{p}:rc:{zone}"


def recount_set_key(p: str, zone: str) -> str:
    return f"{p}:rcs:{zone}"


# -- queueing, workers, after-actions ---------------------------------------------------------------------
def enqueue_generation_key(p: str, zone: str) -> str:
    return f"{p}:eg:{zone}"


def lock_key(p: str, zone: str, rel: str) -> str:
    h = hashlib.blake2b(os.fsencode(rel), digest_size=12).hexdigest()
    return f"{p}:lock:{zone}:{h}"


def after_key(p: str, zone: str) -> str:
    return f"{p}:after:{zone}"


# -- completed directories (completion/units.py) and files held for their replicas (ingest/replicas.py) --------
def unit_pending_key(p: str, zone: str) -> str:
    return f"{p}:unit:{zone}"


def unit_info_key(p: str, zone: str) -> str:
    return f"{p}:unitinfo:{zone}"


def unit_done_key(p: str, zone: str) -> str:
    return f"{p}:unitdone:{zone}"


def unit_waiting_key(p: str, zone: str) -> str:
    return f"{p}:unitwait:{zone}"


def unit_held_key(p: str, zone: str, unit: str) -> str:
    return f"{p}:unitheld:{zone}:" + hashlib.blake2b(os.fsencode(unit), digest_size=10).hexdigest()


def replica_held_key(p: str, zone: str) -> str:
    return f"{p}:held:{zone}"


# -- daemons ------------------------------------------------------------------------------------------------
def owner_key(p: str, zone: str) -> str:
    return f"{p}:owner:{zone}"


def claims_key(p: str) -> str:
    """Hash: zone name → where the zone of the daemon running it really is, and its collection
    (daemonclaims.py: two daemons' zones never overlap)."""
    return f"{p}:claims"


def status_key(p: str, host: str, pid: int) -> str:
    return f"{p}:daemon:{host}:{pid}"


def status_pattern(p: str) -> str:
    return f"{_glob_escape(p)}:daemon:*"


def epoch_key(p: str) -> str:
    return f"{p}:epoch"


# -- walks run as jobs ----------------------------------------------------------------------------------
def walk_chunks_key(p: str, zone: str, walk: str) -> str:
    return f"{p}:wk:{zone}:{walk}:c"


def walk_results_key(p: str, zone: str, walk: str) -> str:
    return f"{p}:wk:{zone}:{walk}:r"
