"""Ingest one batch of settled files into iRODS: the worker's real work.

Per file (see :func:`ingest_file`):

1. Take the Redis lock of (zone, rel); if another worker holds it, hand the file back to be settled again.
2. ``lstat`` it again: gone → forgotten; not a regular file → skipped; size or mtime_ns differ from the
   job's record → ``ledger.forget(..., resettle=True)`` ("changed, resettled", not an error).
3. Create the target collection (idempotent; "already exists" from a racing worker is success).
4. Look at the target, its temporary copy and a version set aside, in one query. A version set aside
   without a final object (an update interrupted between its two renames) is renamed back first; a
   leftover temporary copy is removed.
5. The target exists: same size and checksum as the local file (SHA-256, iRODS ``sha2:`` + base64) →
   done without moving a byte ("already-present"). Other content, and its AVUs say this zone's file
   made it (``ingestd::zone`` and ``ingestd::source_path``) → an update; anything else is a conflict:
   fail with the reason, never overwrite.
6. ``put``: write the bytes to ``<coll>/.<name>.ingestd-<tag>.part`` (see :mod:`names`), hashing them while
   reading (PRC's parallel put above 32 MiB with the hash computed alongside), with ``regChksum`` so the server
   checksums what it stored when the copy closes; compare that with ours (in the server's scheme), check the
   local file did not change meanwhile, set the AVUs in one atomic call, then rename onto the final name.
   An update first renames the old object to a numbered version ``<name>.~N~`` (``versions = "keep"``, the
   default) or ``.<name>.ingestd-<tag>-old.part`` (``replace``: then removed), and renames the new one in.
   So the final name only ever holds a verified, complete copy with its metadata.
   ``register``: register the landing file's real path (``destRescName`` = the zone's resource,
   ``regChksum``), compare the server's checksum with the local one (a mismatch unregisters it again),
   set the AVUs.
7. After verification only: ``after = delete`` removes the landing file, ``move`` moves it below
   ``move_to`` (if it is still the very file that was ingested).
8. ``ledger.mark_done``; one log record per file with the structured INGEST_* fields.

Transient errors (network, iRODS down, SYS_* errors, timeouts) are retried with exponential backoff,
the session reset between attempts; permanent ones (conflict, permissions, unreadable local file) fail
at once with ``ledger.mark_failed``.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import irods.exception as iex
import redis
from irods.api_number import api_number
from irods.column import In, Like
from irods.message import FileOpenRequest, ObjCopyRequest, StringStringMap, iRODSMessage
from irods.meta import AVUOperation, iRODSMeta
from irods.models import Collection, DataObject, DataObjectMeta

from . import __version__, after, checksums, names
from .checksums import Digest
from .config import Config, QueueConfig
from .irods_session import SessionError, SessionHolder
from .job import Batch, FileItem, ZoneSpec
from .ledger import Ledger
from .locks import FileLock
from .messages import MessageId

log = logging.getLogger(__name__)

AVU_PREFIX = "ingestd::"
A_SOURCE_HOST = AVU_PREFIX + "source_host"
A_SOURCE_PATH = AVU_PREFIX + "source_path"
A_SIZE = AVU_PREFIX + "size"
A_MTIME = AVU_PREFIX + "mtime"
A_INGEST_TIME = AVU_PREFIX + "ingest_time"
A_ZONE = AVU_PREFIX + "zone"
A_VERSION = AVU_PREFIX + "version"
A_ORIGINAL_NAME = AVU_PREFIX + "original_name"
A_SUPERSEDED = AVU_PREFIX + "superseded"  # on a previous version kept as <name>.~N~: when it was replaced

PARALLEL_THRESHOLD = 32 * 1024 * 1024
CHUNK = 8 * 1024 * 1024

# results
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

_SUMMARY_KEYS = {INGESTED: "ingested", ALREADY: "already_present", UPDATED: "updated", FAILED: "failed",
                 CHANGED: "changed", VANISHED: "vanished", NOT_REGULAR: "skipped", LOCKED: "locked",
                 LOST: "lock_lost", DEFERRED: "deferred"}


class PermanentError(Exception):
    """Retrying cannot help: the file is marked failed with this reason."""

    kind = "permanent"


class Conflict(PermanentError):
    kind = "conflict"


class LocalChanged(Exception):
    """The landing file is not the version the job was made for (or changed while being copied)."""


class Vanished(Exception):
    pass


class StaleLookup(Exception):
    """The batch's look-up said the object was absent, but it exists now: look again (once)."""


class NotRegular(Exception):
    pass


# iRODS errors that are not worth retrying.
_PERMANENT_IRODS = tuple(
    getattr(iex, n) for n in (
        "CAT_NO_ACCESS_PERMISSION", "CAT_INSUFFICIENT_PRIVILEGE_LEVEL", "SYS_NO_API_PRIV", "UNIX_FILE_STAT_ERR",
        "UNIX_FILE_OPEN_ERR", "USER_INPUT_PATH_ERR", "SYS_INVALID_FILE_PATH", "SYS_RESC_DOES_NOT_EXIST",
        "CAT_NAME_EXISTS_AS_COLLECTION", "CAT_NAME_EXISTS_AS_DATAOBJ", "SYS_INVALID_INPUT_PARAM",
        "CAT_INVALID_ARGUMENT", "SYS_NOT_ALLOWED", "SYS_NOT_SUPPORTED", "HIERARCHY_ERROR",
        "USER_INCOMPATIBLE_PARAMS",
    ) if hasattr(iex, n)
)


def is_transient(exc: BaseException) -> bool:
    """Network trouble, a server that is down or slow, SYS_* errors: worth another attempt."""
    if isinstance(exc, PermanentError | LocalChanged | Vanished | NotRegular):
        return False
    if isinstance(exc, CollectionRace | iex.CAT_UNKNOWN_COLLECTION):
        return True  # a collection racing into existence, or removed meanwhile: create it again
    if isinstance(exc, iex.NetworkException | ConnectionError | TimeoutError | socket.timeout | EOFError):
        return True
    if isinstance(exc, _PERMANENT_IRODS):
        return False
    if isinstance(exc, iex.SystemException | iex.FileDriverException | iex.USER_CHKSUM_MISMATCH):
        return True  # SYS_* (connections, agents), storage I/O errors, a copy that did not verify
    if isinstance(exc, iex.iRODSException):
        return False
    if isinstance(exc, OSError):  # socket errors and the like (local file errors are turned permanent)
        return True
    # PRC raises KeyError for error codes it does not know and RuntimeError when a parallel put fails.
    return isinstance(exc, KeyError | RuntimeError)


def describe(exc: BaseException) -> str:
    if isinstance(exc, iex.iRODSException):
        code = getattr(exc, "code", None)
        msg = str(exc).strip()
        return f"{type(exc).__name__}" + (f" ({code})" if code else "") + (f": {msg}" if msg else "")
    if isinstance(exc, OSError) and exc.strerror:
        return f"{type(exc).__name__}: {exc.strerror}" + (f": {exc.filename}" if exc.filename else "")
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def backoff_delay(q: QueueConfig, attempt: int) -> float:
    return float(min(q.backoff * (2 ** attempt), q.backoff_max))


@dataclass
class IngestContext:
    """What a worker process keeps between jobs."""

    config: Config
    sessions: SessionHolder
    ledger: Ledger
    redis: redis.Redis
    host: str = field(default_factory=socket.gethostname)
    sleep: Callable[[float], Any] = time.sleep
    known_collections: set[str] = field(default_factory=set)
    hash_scheme: str | None = None  # the server's checksum scheme, learnt from its first answer
    # (collection, name) → what one query per collection found for a batch's files (see ingest_batch)
    prefetched: dict[tuple[str, str], dict[str, _Obj]] = field(default_factory=dict)



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


@dataclass
class _Obj:
    name: str
    size: int
    checksum: str
    paths: list[str]


# --------------------------------------------------------------------------------------------------
# iRODS helpers


class CollectionRace(Exception):
    """The collection is still missing after creating it (other workers creating its parents): retry."""


COLLECTION_TRIES = 5


def ensure_collection(ctx: IngestContext, session: Any, coll: str) -> None:
    """Create coll and its parents; safe when many workers race for the same tree.

    A real server's recursive create stops at a parent that another session created meanwhile and
    answers "already exists" although `coll` itself was not made: so the answer is never trusted, the
    collection is looked up, and the create repeated until it is there (then cached)."""
    if coll in ctx.known_collections:
        return
    for attempt in range(COLLECTION_TRIES):
        try:
            session.collections.create(coll, recurse=True)
        except (iex.CATALOG_ALREADY_HAS_ITEM_BY_THAT_NAME, iex.CAT_NAME_EXISTS_AS_COLLECTION,
                iex.CollectionDoesNotExist, iex.CAT_UNKNOWN_COLLECTION):
            pass  # another worker made coll or a parent first, or PRC's look-up after the create raced
        except iex.iRODSException as e:
            if is_transient(e) or not session.collections.exists(coll):
                raise
        if session.collections.exists(coll):
            break
        ctx.sleep(0.02 * (attempt + 1))
    else:
        raise CollectionRace(f"collection {coll} still missing after {COLLECTION_TRIES} creates")
    if len(ctx.known_collections) > 100_000:
        ctx.known_collections.clear()
    ctx.known_collections.add(coll)


def lookup(session: Any, coll: str, wanted: Iterable[str]) -> dict[str, _Obj]:
    """The data objects called one of `wanted` in coll (good replicas first), in as few queries as may be."""
    wanted = list(wanted)
    found: dict[str, _Obj] = {}
    quoted = [n for n in wanted if "'" in n]
    plain = [n for n in wanted if "'" not in n]
    cols = (DataObject.name, DataObject.size, DataObject.checksum, DataObject.path, DataObject.replica_status)
    queries = []
    if plain:
        queries.append(session.query(*cols).filter(Collection.name == coll)
                       .filter(In(DataObject.name, plain) if len(plain) > 1 else DataObject.name == plain[0]))
    for n in quoted:  # GenQuery cannot quote ' inside an `in` list; a single `=` works
        queries.append(session.query(*cols).filter(Collection.name == coll).filter(DataObject.name == n))
    for q in queries:
        for row in q:
            name = row[DataObject.name]
            o = found.get(name)
            if o is None:
                o = found[name] = _Obj(name, int(row[DataObject.size] or 0), row[DataObject.checksum] or "", [])
            good = str(row[DataObject.replica_status]) == "1"
            if good:
                o.size = int(row[DataObject.size] or 0)
                o.checksum = row[DataObject.checksum] or o.checksum
            o.paths.append(row[DataObject.path] or "")
    return found


def object_avus(session: Any, coll: str, name: str) -> dict[str, str]:
    avus: dict[str, str] = {}
    q = session.query(DataObjectMeta.name, DataObjectMeta.value) \
        .filter(Collection.name == coll).filter(DataObject.name == name)
    for row in q:
        n = row[DataObjectMeta.name]
        if n and n.startswith(AVU_PREFIX):
            avus[n] = row[DataObjectMeta.value] or ""
    return avus


def server_checksum(session: Any, path: str, force: bool = False) -> str:
    kw = {"forceChksum": ""} if force else {}
    return str(session.data_objects.chksum(path, **kw) or "")


def rename(session: Any, src: str, dst: str) -> None:
    """DATA_OBJ_RENAME of a data object onto a name that must not exist (PRC's move() first asks whether
    dst is a collection: two more GenQueries a file, which this skips)."""
    def inp(path: str) -> FileOpenRequest:
        return FileOpenRequest(objPath=path, createMode=0, openFlags=0, offset=0, dataSize=0,
                               numThreads=session.numThreads, oprType=11, KeyValPair_PI=StringStringMap())

    msg = iRODSMessage("RODS_API_REQ", msg=ObjCopyRequest(srcDataObjInp_PI=inp(src), destDataObjInp_PI=inp(dst)),
                       int_info=api_number["DATA_OBJ_RENAME_AN"])
    with session.pool.get_connection() as conn:
        conn.send(msg)
        conn.recv()


def _unlink_quiet(session: Any, path: str) -> None:
    try:
        session.data_objects.unlink(path, force=True)
    except (iex.OBJ_PATH_DOES_NOT_EXIST, iex.DataObjectDoesNotExist, iex.CAT_UNKNOWN_FILE, iex.CAT_NO_ROWS_FOUND):
        pass  # iRODS 5 answers CAT_NO_ROWS_FOUND for a missing object


# --------------------------------------------------------------------------------------------------
# one file


@dataclass
class _Local:
    path: str
    st: os.stat_result
    follow: bool = False  # the zone follows symlinks: stat the file a link points to

    def stat(self) -> os.stat_result:
        return os.stat(self.path) if self.follow else os.lstat(self.path)


def _source_path(zone: ZoneSpec, rel: str) -> str:
    return zone.root.rstrip("/") + "/" + names.display(rel)


def _check_local(zone: ZoneSpec, item: FileItem) -> _Local:
    path = os.path.join(zone.root, item.rel)
    follow = bool(getattr(zone, "follow_symlinks", False))
    try:
        st = os.stat(path) if follow else os.lstat(path)
    except FileNotFoundError:
        raise Vanished() from None
    except OSError as e:
        raise PermanentError(f"cannot stat the local file: {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise NotRegular()
    if follow and not _inside(zone.root, path):  # re-pointed since it was queued: where does it lead now?
        raise PermanentError("the symlink now points outside the zone: not ingested")
    if st.st_size != item.size or st.st_mtime_ns != item.mtime_ns:
        raise LocalChanged()
    return _Local(path, st, follow)


def _inside(root: str, path: str) -> bool:
    real_root = os.path.realpath(root)
    return os.path.commonpath([real_root, os.path.realpath(path)]) == real_root


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino, a.st_size, a.st_mtime_ns) == (b.st_dev, b.st_ino, b.st_size, b.st_mtime_ns)


def _recheck_local(local: _Local) -> None:
    try:
        st = local.stat()
    except FileNotFoundError:
        raise LocalChanged() from None
    if not _same_file(st, local.st):
        raise LocalChanged()


def _local_digest(ctx: IngestContext, local: _Local) -> Digest:
    try:
        return checksums.file_digest(local.path, checksums.schemes_for(ctx.hash_scheme))
    except PermissionError as e:
        raise PermanentError(f"unreadable local file: {e.strerror}") from None
    except FileNotFoundError:
        raise LocalChanged() from None


def _metadata_ops(ctx: IngestContext, zone: ZoneSpec, item: FileItem, target: names.Target) -> list[AVUOperation]:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    avus = [
        iRODSMeta(A_SOURCE_HOST, ctx.host),
        iRODSMeta(A_SOURCE_PATH, _source_path(zone, item.rel)),
        iRODSMeta(A_ZONE, zone.name),
        iRODSMeta(A_SIZE, str(item.size), "bytes"),
        iRODSMeta(A_MTIME, str(item.mtime_ns), "ns"),
        iRODSMeta(A_INGEST_TIME, now),
        iRODSMeta(A_VERSION, __version__),
    ]
    if target.mapped:
        avus.append(iRODSMeta(A_ORIGINAL_NAME, names.original_name_value(item.rel), "hex"))
    return [AVUOperation(operation="add", avu=m) for m in avus]


def _set_metadata(session: Any, path: str, ops: list[AVUOperation]) -> None:
    session.metadata.apply_atomic_operations(DataObject, path, *ops)


def _made_by_us(avus: dict[str, str], zone: ZoneSpec, item: FileItem, target: names.Target) -> bool:
    if avus.get(A_ZONE) != zone.name or avus.get(A_SOURCE_PATH) != _source_path(zone, item.rel):
        return False
    original = avus.get(A_ORIGINAL_NAME)
    return original == names.original_name_value(item.rel) if target.mapped else original is None


def _copy_small(session: Any, local: _Local, dest: str, opts: dict[str, str], schemes: tuple[str, ...]) -> Digest:
    h = checksums.Hasher(schemes)
    try:
        fd = os.open(local.path, os.O_RDONLY | os.O_CLOEXEC | (0 if local.follow else os.O_NOFOLLOW))
    except PermissionError as e:
        raise PermanentError(f"unreadable local file: {e.strerror}") from None
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ELOOP):
            raise LocalChanged() from None
        raise
    with os.fdopen(fd, "rb", buffering=0) as f:
        if not _same_file(os.fstat(fd), local.st):
            raise LocalChanged()
        with session.data_objects.open(dest, "w", **opts) as o:
            while chunk := f.read(CHUNK):
                h.update(chunk)
                o.write(chunk)
    return h.digest()


def _copy_large(session: Any, local: _Local, dest: str, opts: dict[str, str], schemes: tuple[str, ...]) -> Digest:
    """PRC's parallel put, with the digests computed by a thread reading the same file meanwhile."""
    result: list[Digest] = []
    error: list[BaseException] = []

    def hash_it() -> None:
        try:
            result.append(checksums.file_digest(local.path, schemes))
        except BaseException as e:  # noqa: B036 - handed to the caller
            error.append(e)

    if not os.access(local.path, os.R_OK):
        raise PermanentError("unreadable local file: Permission denied")
    t = threading.Thread(target=hash_it, name="sha256", daemon=True)
    t.start()
    try:
        session.data_objects.put(local.path, dest, num_threads=0, **opts)
    finally:
        t.join()
    if error:
        e = error[0]
        if isinstance(e, PermissionError):
            raise PermanentError(f"unreadable local file: {e.strerror}")
        if isinstance(e, FileNotFoundError):
            raise LocalChanged()
        raise e
    return result[0]


def _compare(ctx: IngestContext, local: _Local, digest: Digest, got: str) -> tuple[Digest, bool]:
    """Does the server's checksum `got` match the local file? In the server's scheme, which is learnt here
    (a scheme the digest lacks is computed from the file: the server may have been switched)."""
    if not got:
        return digest, False
    try:
        ctx.hash_scheme = checksums.scheme_of(got)
        digest = digest.extended(got, local.path, _no_follow_opener(local))
    except checksums.UnknownScheme as e:
        raise PermanentError(str(e)) from None
    except PermissionError as e:
        raise PermanentError(f"unreadable local file: {e.strerror}") from None
    except OSError:
        raise LocalChanged() from None
    return digest, digest.matches(got)


def _shown(ctx: IngestContext, digest: Digest) -> str:
    scheme = ctx.hash_scheme if ctx.hash_scheme in digest.by_scheme else checksums.SHA2
    return digest.irods(scheme or checksums.SHA2)


def _no_follow_opener(local: _Local) -> Any:
    flags = 0 if local.follow else os.O_NOFOLLOW
    return lambda path, mode: os.open(path, mode | flags)


def _register(session: Any, realpath: str, path: str, opts: dict[str, str]) -> None:
    try:
        session.data_objects.register(realpath, path, regChksum="", **opts)
    except (iex.UNIX_FILE_STAT_ERR, iex.UNIX_FILE_OPEN_ERR) as e:
        # it can stat but not open the file (to checksum it): nothing may stay registered
        with contextlib.suppress(iex.iRODSException):
            if session.data_objects.exists(path):
                session.data_objects.unregister(path)
        raise PermanentError(
            f"the iRODS server cannot read {realpath} ({describe(e)}): register mode needs the server's "
            "service account, on the host of the zone's resource, to read the landing file and to search "
            "every directory above it") from None


class LockLost(Exception):
    """This worker's lock on the file expired (it was frozen or cut off): another worker may have it now."""


def _still_mine(lock: FileLock | None) -> None:
    if lock is not None and not lock.still_held():
        raise LockLost()


def _set_aside_version(session: Any, target: names.Target) -> str:
    """Rename the object at target.path to the first free `<name>.~N~` (never over another object)."""
    n = _last_version(session, target) + 1
    while True:
        aside = f"{target.path}.~{n}~"
        try:
            rename(session, target.path, aside)
            return aside
        except (iex.CAT_NAME_EXISTS_AS_DATAOBJ, iex.CATALOG_ALREADY_HAS_ITEM_BY_THAT_NAME):
            n += 1


def _last_version(session: Any, target: names.Target) -> int:
    if "'" in target.name:
        return 0  # GenQuery cannot quote it in a like: count up from 1
    prefix = target.name + ".~"
    q = session.query(DataObject.name).filter(Collection.name == target.collection) \
        .filter(Like(DataObject.name, prefix + "%~"))
    nums = [int(n[len(prefix):-1]) for n in (r[DataObject.name] for r in q)
            if n.startswith(prefix) and n[len(prefix):-1].isdigit()]
    return max(nums, default=0)


def _mark_superseded(session: Any, path: str) -> None:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    try:
        _set_metadata(session, path, [AVUOperation(operation="add", avu=iRODSMeta(A_SUPERSEDED, now))])
    except iex.iRODSException as e:  # the version is kept either way; the AVU only dates it
        log.warning("could not mark %s as superseded: %s", path, describe(e))


def _attempt(ctx: IngestContext, session: Any, zone: ZoneSpec, item: FileItem, target: names.Target,
             res: FileResult, lock: FileLock | None = None) -> str:
    """One try at one file; returns INGESTED, UPDATED or ALREADY, or raises."""
    local = _check_local(zone, item)
    res.local_st = local.st
    ensure_collection(ctx, session, target.collection)
    part, old = target.part_name, target.old_name
    objs = ctx.prefetched.pop((target.collection, target.name), None)
    prefetched = objs is not None
    if objs is None:
        objs = lookup(session, target.collection, [target.name, part, old])
    if target.name not in objs and old in objs:
        # an update was interrupted between its two renames: put the previous version back first
        rename(session, target.old_path, target.path)
        objs[target.name] = objs.pop(old)
        objs[target.name].name = target.name
    if part in objs:
        _unlink_quiet(session, target.part_path)
    if old in objs:
        _unlink_quiet(session, target.old_path)

    realpath = os.path.realpath(local.path) if zone.mode == "register" else ""
    existing = objs.get(target.name)
    update = False
    digest: Digest | None = None
    if existing is not None:
        if existing.size == item.size:
            stored = existing.checksum or server_checksum(session, target.path)
            digest, same = _compare(ctx, local, _local_digest(ctx, local), stored)
            if same:
                _recheck_local(local)
                res.digest = digest.sha256
                if zone.mode == "register" and realpath in existing.paths:
                    avus = object_avus(session, target.collection, target.name)
                    if A_SOURCE_PATH not in avus:  # registered by us, interrupted before the AVUs
                        _set_metadata(session, target.path, _metadata_ops(ctx, zone, item, target))
                return ALREADY
        avus = object_avus(session, target.collection, target.name)
        if not _made_by_us(avus, zone, item, target):
            who = avus.get(A_SOURCE_PATH)
            why = f"made from {who} in zone {avus.get(A_ZONE)}" if who else "not made by irods-ingestd"
            raise Conflict(f"conflict: {target.path} exists with other content ({existing.size} bytes, "
                           f"{existing.checksum or 'no checksum'}), {why}; not overwritten")
        if zone.versions == "conflict" and zone.mode == "put":
            raise Conflict(f"conflict: {target.path} holds an earlier version of this file ({existing.size} bytes, "
                           f"{existing.checksum or 'no checksum'}); versions = \"conflict\": not overwritten")
        update = True

    opts: dict[str, str] = {"destRescName": zone.resource} if zone.resource else {}
    ops = _metadata_ops(ctx, zone, item, target)
    if zone.mode == "register":
        if names.needs_mapping(realpath):
            raise PermanentError("register mode cannot register a path that is not valid UTF-8 text")
        set_aside = False
        if update and existing is not None:
            if realpath in existing.paths:
                session.data_objects.unregister(target.path)
            else:
                rename(session, target.path, target.old_path)
                set_aside = True
        if digest is None:
            digest = _local_digest(ctx, local)
        _register(session, realpath, target.path, opts)
        got = server_checksum(session, target.path)
        try:
            digest, same = _compare(ctx, local, digest, got)
            if not same:
                _recheck_local(local)
                raise PermanentError(f"checksum mismatch after register: iRODS {got or 'none'}, "
                                     f"local {_shown(ctx, digest)}")
            _recheck_local(local)
        except (LocalChanged, PermanentError):
            session.data_objects.unregister(target.path)
            if set_aside:
                rename(session, target.old_path, target.path)
            raise
        _set_metadata(session, target.path, ops)
        res.digest = digest.sha256
        if set_aside:
            _unlink_quiet(session, target.old_path)
        res.moved_bytes = 0
        return UPDATED if update else INGESTED

    # put: copy to the temporary name, verify, set the AVUs, rename into place
    try:
        copy = _copy_large if item.size > PARALLEL_THRESHOLD else _copy_small
        # regChksum: the server checksums the bytes it stored when the copy is closed (in the same catalog
        # update that finalizes the replica); the answer is then a look-up, not a second read of the file
        digest = copy(session, local, target.part_path, {**opts, "regChksum": ""},
                      checksums.schemes_for(ctx.hash_scheme))
        res.moved_bytes = item.size
        got = server_checksum(session, target.part_path) or server_checksum(session, target.part_path, force=True)
        digest, same = _compare(ctx, local, digest, got)
        if not same:
            _recheck_local(local)  # a file that changed while being read is resettled, not failed
            raise iex.USER_CHKSUM_MISMATCH(f"iRODS has {got or 'no checksum'}, the local file "
                                           f"{_shown(ctx, digest)}")
        _recheck_local(local)
        _set_metadata(session, target.part_path, ops)
        res.digest = digest.sha256
    except BaseException as e:
        if not is_transient(e):  # leave nothing behind that looks like an ingest (a transient error may
            try:                 # have taken the connection; the next attempt removes the temp copy)
                _unlink_quiet(session, target.part_path)
            except Exception:  # noqa: BLE001
                pass
        raise
    _still_mine(lock)
    if update:
        keep = zone.versions == "keep"
        if keep:
            aside = _set_aside_version(session, target)
        else:
            rename(session, target.path, target.old_path)
            aside = target.old_path
        try:
            rename(session, target.part_path, target.path)
        except BaseException:
            rename(session, aside, target.path)
            raise
        if keep:
            res.kept_as = aside
            _mark_superseded(session, aside)
        else:
            _unlink_quiet(session, target.old_path)
        return UPDATED
    try:
        rename(session, target.part_path, target.path)
    except iex.CAT_NAME_EXISTS_AS_DATAOBJ:
        _unlink_quiet(session, target.part_path)
        if prefetched:  # the batch's look-up is older than this file's lock: look again before judging
            raise StaleLookup() from None
        raise Conflict(f"conflict: {target.path} was created by someone else during the copy; "
                       f"not overwritten") from None
    return INGESTED


def _after_action(ctx: IngestContext, zone: ZoneSpec, item: FileItem, res: FileResult) -> str:
    """Run the zone's after-action on the verified file now, or defer it (after_hold, a writer still at it);
    '' or what to say about it. The ledger entry stays until the landing file is gone."""
    st = res.local_st
    if zone.after not in after.ACTIONS or st is None:
        return ""
    v = after.Verified(item.rel, item.size, item.mtime_ns, st.st_dev, st.st_ino, res.digest.hex())
    if zone.after_hold > 0:
        after.defer(ctx.redis, ctx.ledger.prefix, zone.name, v, zone.after_hold)
        return ""
    return run_after(ctx, zone, v)


def run_after(ctx: IngestContext, zone: ZoneSpec, v: after.Verified) -> str:
    outcome, reason = after.run(zone, v)
    if outcome in (after.DONE, after.GONE):
        ctx.ledger.drop_done(zone.name, v.rel, v.size, v.mtime_ns)
    elif outcome == after.CHANGED:  # another file under the name (maybe even of the same size and mtime):
        ctx.ledger.forget(zone.name, v.rel, v.size, v.mtime_ns, resettle=True)  # settle and copy it too
    elif outcome == after.BUSY:
        after.defer(ctx.redis, ctx.ledger.prefix, zone.name, v, max(after.RETRY_BUSY, zone.after_hold))
        reason += f" (tried again in {max(after.RETRY_BUSY, zone.after_hold):g}s)"
    return "" if outcome == after.GONE else reason


def run_after_batch(ctx: IngestContext, zone: ZoneSpec, items: Iterable[after.Verified]) -> dict[str, int]:
    """The deferred after-actions the daemon handed back (tasks.after_batch): each under its file's lock."""
    counts = {"done": 0, "later": 0}
    for v in items:
        lock = FileLock(ctx.redis, ctx.ledger.prefix, zone.name, v.rel)
        if not lock.acquire():  # a new version is being ingested: try again shortly
            after.defer(ctx.redis, ctx.ledger.prefix, zone.name, v, after.RETRY_BUSY)
            counts["later"] += 1
            continue
        try:
            reason = run_after(ctx, zone, v)
        finally:
            lock.release()
        if reason:
            log.warning("%s: %s", _source_path(zone, v.rel), reason,
                        extra={"fields": {"INGEST_ZONE": zone.name, "INGEST_PATH": _source_path(zone, v.rel)}})
        counts["done" if not reason else "later"] += 1
    return counts


def _log(zone: ZoneSpec, item: FileItem, res: FileResult, level: int, mid: str) -> None:
    fields = {"INGEST_ZONE": zone.name, "INGEST_PATH": _source_path(zone, item.rel),
              "IRODS_PATH": res.irods_path,
              "INGEST_BYTES": res.nbytes if res.result in (INGESTED, UPDATED) else 0,
              "INGEST_SECONDS": round(res.seconds, 3),
              "INGEST_RESULT": res.result if res.result != FAILED else f"failed: {res.reason}"}
    verb = {INGESTED: "ingested", UPDATED: "updated", ALREADY: "already present:", FAILED: "failed to ingest",
            CHANGED: "changed since settled, resettled:", VANISHED: "vanished before ingest:",
            NOT_REGULAR: "not a regular file any more:", LOCKED: "locked by another worker, resettled:",
            LOST: "left to another worker:", DEFERRED: "iRODS unavailable, queued again:"}
    msg = "%s %s" + (" (%s)" if res.reason else "")
    args: tuple[Any, ...] = (verb.get(res.result, res.result), fields["INGEST_PATH"])
    if res.reason:
        args += (res.reason,)
    log.log(level, msg, *args, extra={"message_id": mid, "fields": fields})


def ingest_file(ctx: IngestContext, zone: ZoneSpec, item: FileItem, retries: int | None = None) -> FileResult:
    """Ingest one file with its lock, retries and ledger record; returns what happened (never raises for
    the file's own problems)."""
    q = ctx.config.queue
    retries = q.retries if retries is None else retries
    res = FileResult(item.rel, FAILED, nbytes=item.size)
    t0 = time.monotonic()
    try:
        target = names.target_for(zone.collection, item.rel)
        res.irods_path = target.path
    except names.BadName as e:
        return _fail(ctx, zone, item, res, f"bad name: {e}", "permanent", t0)

    lock = FileLock(ctx.redis, ctx.ledger.prefix, zone.name, item.rel)
    if not lock.acquire():
        ctx.ledger.forget(zone.name, item.rel, item.size, item.mtime_ns, resettle=True)
        res.result = LOCKED
        return _done_log(zone, item, res, t0, logging.INFO, MessageId.FILE_SKIPPED)
    try:
        out = _attempts(ctx, zone, item, target, res, retries, t0, lock)
        if out is not None:
            return out
        res.reason = _after_action(ctx, zone, item, res) if res.result in (INGESTED, UPDATED, ALREADY) else ""
    except LockLost:
        res.result, res.reason = LOST, "the lock expired meanwhile: another worker has the file"
        return _done_log(zone, item, res, t0, logging.WARNING, MessageId.FILE_SKIPPED)
    finally:
        lock.release()
    mid = MessageId.FILE_SKIPPED if res.result == ALREADY else MessageId.FILE_INGESTED
    return _done_log(zone, item, res, t0, logging.WARNING if res.reason else logging.INFO, mid)


def _attempts(ctx: IngestContext, zone: ZoneSpec, item: FileItem, target: names.Target, res: FileResult,
              retries: int, t0: float, lock: FileLock) -> FileResult | None:
    """Try until done (None: res.result says how; the ledger has it) or a final answer (returned)."""
    q = ctx.config.queue
    attempt = 0
    while True:
        try:
            session = ctx.sessions.get()
            res.result = _attempt(ctx, session, zone, item, target, res, lock)
            _still_mine(lock)
            if not ctx.ledger.mark_done(zone.name, item.rel, item.size, item.mtime_ns, res.digest):
                log.debug("a newer version of %s was queued meanwhile", item.rel)
            return None
        except StaleLookup:
            continue  # the next attempt looks the object up afresh (the prefetched entry is gone)
        except LockLost:
            raise
        except LocalChanged:
            _still_mine(lock)
            ctx.ledger.forget(zone.name, item.rel, item.size, item.mtime_ns, resettle=True)
            res.result = CHANGED
            return _done_log(zone, item, res, t0, logging.INFO, MessageId.FILE_SKIPPED)
        except Vanished:
            _still_mine(lock)
            ctx.ledger.forget(zone.name, item.rel, item.size, item.mtime_ns)
            res.result = VANISHED
            return _done_log(zone, item, res, t0, logging.INFO, MessageId.FILE_SKIPPED)
        except NotRegular:
            _still_mine(lock)
            ctx.ledger.forget(zone.name, item.rel, item.size, item.mtime_ns)
            res.result = NOT_REGULAR
            return _done_log(zone, item, res, t0, logging.WARNING, MessageId.FILE_SKIPPED)
        except PermanentError as e:
            _still_mine(lock)
            return _fail(ctx, zone, item, res, str(e), e.kind, t0)
        except SessionError:
            raise  # the worker's configuration, not this file: fail the job, keep the files queued
        except Exception as e:  # noqa: BLE001 - classified below
            _still_mine(lock)
            if not is_transient(e):
                return _fail(ctx, zone, item, res, describe(e), "permanent", t0)
            ctx.sessions.reset()
            ctx.known_collections.clear()
            if attempt >= retries:
                return _give_back(ctx, zone, item, res, f"{describe(e)} (after {attempt + 1} attempts)", t0)
            delay = backoff_delay(q, attempt)
            log.warning("transient error on %s (attempt %d of %d), retrying in %.1fs: %s",
                        res.irods_path, attempt + 1, retries + 1, delay, describe(e))
            attempt += 1
            ctx.sleep(delay)


def _give_back(ctx: IngestContext, zone: ZoneSpec, item: FileItem, res: FileResult, reason: str,
               t0: float) -> FileResult:
    """A transient error outlasted the retries (iRODS down for an upgrade, a database restart): the file
    goes back to the daemon to be queued again, until it has been failing for `give_up_after`; only then
    is it listed as failed."""
    first = ctx.ledger.note_transient(zone.name, item.rel)
    if time.time() - first < ctx.config.queue.give_up_after:
        ctx.ledger.forget(zone.name, item.rel, item.size, item.mtime_ns, resettle=True)
        res.result, res.reason = DEFERRED, reason
        return _done_log(zone, item, res, t0, logging.WARNING, MessageId.FILE_SKIPPED)
    ctx.ledger.clear_transient(zone.name, item.rel)
    return _fail(ctx, zone, item, res, f"{reason}; failing for {ctx.config.queue.give_up_after:g}s",
                 "transient", t0)


def _done_log(zone: ZoneSpec, item: FileItem, res: FileResult, t0: float, level: int, mid: str) -> FileResult:
    res.seconds = time.monotonic() - t0
    _log(zone, item, res, level, mid)
    return res


def _fail(ctx: IngestContext, zone: ZoneSpec, item: FileItem, res: FileResult, reason: str, kind: str,
          t0: float) -> FileResult:
    res.result = FAILED
    res.reason = reason
    ctx.ledger.mark_failed(zone.name, item.rel, item.size, item.mtime_ns, reason, kind)
    return _done_log(zone, item, res, t0, logging.ERROR, MessageId.FILE_FAILED)


def ingest_batch(ctx: IngestContext, batch: Batch) -> dict[str, int]:
    """Every file of a batch; a summary of counts (and bytes moved)."""
    summary = {k: 0 for k in _SUMMARY_KEYS.values()}
    summary["bytes"] = 0
    _prefetch(ctx, batch)
    down = False  # after one file ran out of retries, do not wait again on every other file of the batch
    for item in batch.files:
        res = ingest_file(ctx, batch.zone, item, retries=0 if down else None)
        down = res.result == DEFERRED or (res.result == FAILED and res.reason.endswith("attempts)"))
        summary[_SUMMARY_KEYS[res.result]] += 1
        summary["bytes"] += res.moved_bytes
    return summary


LOOKUP_CHUNK_BYTES = 2000  # names in one GenQuery `in (...)` condition, kept short for any server


def _prefetch(ctx: IngestContext, batch: Batch) -> None:
    """One GenQuery per collection (per ~2 kB of names) for the whole batch instead of one per file.
    What it finds is used once per file; anything that goes wrong here just leaves the per-file look-up."""
    ctx.prefetched.clear()
    by_coll: dict[str, list[names.Target]] = {}
    for item in batch.files:
        try:
            t = names.target_for(batch.zone.collection, item.rel)
        except names.BadName:
            continue
        by_coll.setdefault(t.collection, []).append(t)
    if sum(len(ts) for ts in by_coll.values()) < 2:
        return
    try:
        session = ctx.sessions.get()
        for coll, targets in by_coll.items():
            chunks: list[list[names.Target]] = [[]]
            size = 0
            for t in targets:
                if size >= LOOKUP_CHUNK_BYTES:
                    chunks.append([])
                    size = 0
                chunks[-1].append(t)
                size += 3 * len(t.name.encode("utf-8", "surrogateescape")) + 40
            for chunk in chunks:
                three = {c.name: (c.name, c.part_name, c.old_name) for c in chunk}
                found = lookup(session, coll, [n for ns in three.values() for n in ns])
                for name, ns in three.items():
                    ctx.prefetched[(coll, name)] = {n: found[n] for n in ns if n in found}
    except Exception as e:  # noqa: BLE001 - the per-file path looks again and handles the error properly
        log.debug("batch look-up failed, looking up file by file: %s", e)
        ctx.prefetched.clear()


def retry_failed(ledger: Ledger, zones: Iterable[str]) -> int:
    """Hand the ledger's failed files back to the daemon: each failure is cleared and the file asked to be
    settled again (the daemon's resettle list), which queues it anew. Returns how many."""
    n = 0
    for zone in zones:
        for rel, info in list(ledger.failures(zone)):
            ledger.forget(zone, rel, int(info.get("size", 0)), int(info.get("mtime_ns", 0)), resettle=True)
            ledger.clear_failure(zone, rel)
            n += 1
    return n
