"""The iRODS catalog adapter: every call the ingest makes to the server, and the only module that sends
raw API requests (the rename). Functions take a python-irodsclient session and plain values."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import irods.exception as iex
from irods.access import iRODSAccess
from irods.api_number import api_number
from irods.column import In, Like
from irods.message import (
    FileOpenRequest,
    GenQueryResponse,
    GenQueryResponseColumn,
    ObjCopyRequest,
    StringStringMap,
    iRODSMessage,
)
from irods.meta import AVUOperation, iRODSMeta
from irods.models import Collection, CollectionAccess, DataObject, DataObjectMeta, Resource, User

from .. import metrics_irods, names
from .errors import CollectionRace, Conflict, PermanentError, describe, is_transient
from .metadata import A_SUPERSEDED, AVU_PREFIX

log = logging.getLogger("irods_ingestd.ingest")

COLLECTION_TRIES = 5
MAX_KNOWN_COLLECTIONS = 100_000
SYS_NO_PATH_PERMISSION = -129000  # register as a user the server's acSetChkFilePathPerm policy refuses


@dataclass
class Obj:
    """A data object as a look-up found it (good replicas' size and checksum; every replica's path)."""

    name: str
    size: int
    checksum: str
    paths: list[str]


def ensure_collection(session: Any, coll: str, known: set[str], sleep: Callable[[float], Any]) -> None:
    """Create coll and its parents; safe when many workers race for the same tree.

    A real server's recursive create stops at a parent that another session created meanwhile and
    answers "already exists" although `coll` itself was not made: so the answer is never trusted, the
    collection is looked up, and the create repeated until it is there (then cached in `known`)."""
    if coll in known:
        return
    for attempt in range(COLLECTION_TRIES):
        try:
            session.collections.create(coll, recurse=True)
        except (iex.CATALOG_ALREADY_HAS_ITEM_BY_THAT_NAME, iex.CAT_NAME_EXISTS_AS_COLLECTION,
                iex.CollectionDoesNotExist, iex.CAT_UNKNOWN_COLLECTION):
            pass  # another worker made coll or a parent first, or PRC's look-up after the create raced
        except iex.CAT_NAME_EXISTS_AS_DATAOBJ:
            raise Conflict(f"conflict: the collection {coll} cannot be made: it or a collection above it is the "
                           f"name of a data object (a landing file ingested there is a directory now); "
                           f"nothing overwritten") from None
        except iex.iRODSException as e:
            if is_transient(e) or not session.collections.exists(coll):
                raise
        if session.collections.exists(coll):
            break
        sleep(0.02 * (attempt + 1))
    else:
        raise CollectionRace(f"collection {coll} still missing after {COLLECTION_TRIES} creates")
    if len(known) > MAX_KNOWN_COLLECTIONS:
        known.clear()
    known.add(coll)


def lookup(session: Any, coll: str, wanted: Iterable[str]) -> dict[str, Obj]:
    """The data objects called one of `wanted` in coll (good replicas first), in as few queries as may be."""
    wanted = list(wanted)
    found: dict[str, Obj] = {}
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
                o = found[name] = Obj(name, int(row[DataObject.size] or 0), row[DataObject.checksum] or "", [])
            if str(row[DataObject.replica_status]) == "1":
                o.size = int(row[DataObject.size] or 0)
                o.checksum = row[DataObject.checksum] or o.checksum
            o.paths.append(row[DataObject.path] or "")
    return found


def object_avus(session: Any, coll: str, name: str, prefix: str = AVU_PREFIX) -> dict[str, str]:
    """The object's AVUs whose attribute starts with `prefix` (irods-ingestd's by default; "" for all):
    name → value (one value a name)."""
    avus: dict[str, str] = {}
    q = session.query(DataObjectMeta.name, DataObjectMeta.value) \
        .filter(Collection.name == coll).filter(DataObject.name == name)
    for row in q:
        n = row[DataObjectMeta.name]
        if n and n.startswith(prefix):
            avus[n] = row[DataObjectMeta.value] or ""
    return avus


def server_checksum(session: Any, path: str, force: bool = False) -> str:
    kw = {"forceChksum": ""} if force else {}
    return str(session.data_objects.chksum(path, **kw) or "")


def stored_checksum(session: Any, path: str) -> str:
    """The checksum the catalog holds for an object's good replica ('' if none): a GenQuery, about a
    quarter of the time a DATA_OBJ_CHKSUM call takes on iRODS 5.0.2 (0.9 ms against 3.9 ms here)."""
    coll, _, name = path.rpartition("/")
    obj = lookup(session, coll, [name]).get(name)
    return obj.checksum if obj is not None else ""


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


def unlink_quiet(session: Any, path: str) -> None:
    """Remove an object for good (no trash); one that is already gone is fine."""
    try:
        session.data_objects.unlink(path, force=True)
    except (iex.OBJ_PATH_DOES_NOT_EXIST, iex.DataObjectDoesNotExist, iex.CAT_UNKNOWN_FILE, iex.CAT_NO_ROWS_FOUND):
        pass  # iRODS 5 answers CAT_NO_ROWS_FOUND for a missing object


def register(session: Any, realpath: str, path: str, opts: dict[str, str]) -> None:
    """Register a landing file in place, checksummed by the server; nothing stays registered on failure."""
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
    except KeyError as e:  # python-irodsclient raises KeyError for error codes it does not know
        if e.args and e.args[0] == SYS_NO_PATH_PERMISSION:
            raise PermanentError(
                f"the iRODS server refused to register {realpath} for user {session.username} "
                f"(SYS_NO_PATH_PERMISSION {SYS_NO_PATH_PERMISSION}): registering a physical path needs a "
                "rodsadmin, or a server policy acSetChkFilePathPerm that allows it (see the README, "
                "\"Ownership and replicas\")") from None
        raise


MAX_SQL_ATTR = 50  # GenQueryOut_PI always carries this many SqlResult_PI
SLOT = 1088  # MAX_NAME_LEN: the width of each value in the server's buffer


def bulk_register(session: Any, columns: dict[int, list[str]], nrows: int) -> None:
    """BULK_DATA_OBJ_REG (688): rows given as GenQuery columns (column number → one value a row), registered
    in one transaction on the server (one bad row rolls the call back: the iRODS error is raised)."""
    cols = [GenQueryResponseColumn(attriInx=k, reslen=SLOT, value=v) for k, v in columns.items()]
    cols += [GenQueryResponseColumn(attriInx=0, reslen=0, value=[]) for _ in range(MAX_SQL_ATTR - len(cols))]
    body = GenQueryResponse(rowCnt=nrows, attriCnt=len(columns), continueInx=0, totalRowCount=0, SqlResult_PI=cols)
    msg = iRODSMessage("RODS_API_REQ", msg=body, int_info=api_number["BULK_DATA_OBJ_REG_AN"])
    with session.pool.get_connection() as conn:
        conn.send(msg)
        conn.recv()


def resource_id(session: Any, name: str) -> str:
    rows = list(session.query(Resource.id).filter(Resource.name == name))
    if not rows:
        raise PermanentError(f"no iRODS resource named {name!r}")
    return str(rows[0][Resource.id])


def has_children(session: Any, resc_id: str) -> bool:
    """Is this resource a coordinating one (passthru, replication, ...: it has children)?"""
    return bool(list(session.query(Resource.id).filter(Resource.parent == resc_id)))


def unregister(session: Any, path: str) -> None:
    session.data_objects.unregister(path)


def set_metadata(session: Any, path: str, avus: list[iRODSMeta]) -> None:
    """All of an object's AVUs in one atomic call (the call, not the AVU count, is what costs)."""
    if avus:
        session.metadata.apply_atomic_operations(DataObject, path,
                                                 *(AVUOperation(operation="add", avu=m) for m in avus))


def set_aside_version(session: Any, target: names.Target) -> str:
    """Rename the object at target.path to the first free `<name>.~N~` (never over another object)."""
    n = last_version(session, target) + 1
    while True:
        aside = f"{target.path}.~{n}~"
        try:
            rename(session, target.path, aside)
            return aside
        except (iex.CAT_NAME_EXISTS_AS_DATAOBJ, iex.CATALOG_ALREADY_HAS_ITEM_BY_THAT_NAME):
            n += 1


def last_version(session: Any, target: names.Target) -> int:
    if "'" in target.name:
        return 0  # GenQuery cannot quote it in a like: count up from 1
    prefix = target.name + ".~"
    q = session.query(DataObject.name).filter(Collection.name == target.collection) \
        .filter(Like(DataObject.name, prefix + "%~"))
    nums = [int(n[len(prefix):-1]) for n in (r[DataObject.name] for r in q)
            if n.startswith(prefix) and n[len(prefix):-1].isdigit()]
    return max(nums, default=0)


def mark_superseded(session: Any, path: str) -> None:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    try:
        set_metadata(session, path, [iRODSMeta(A_SUPERSEDED, now)])
    except iex.iRODSException as e:  # the version is kept either way; the AVU only dates it
        log.warning("could not mark %s as superseded: %s", path, describe(e))


# --- ownership and replicas (issue 14.3, 14.4: see ingest/access.py and ingest/replicas.py) -----------------

@dataclass
class Replica:
    number: int
    resource: str  # the root of its resource hierarchy (what a zone's replicate_to names)
    good: bool  # replica status 1 (good); 0 stale, 2+ intermediate or locked
    checksum: str
    size: int


def set_access(session: Any, path: str, level: str, name: str, zone: str = "", recursive: bool = False) -> None:
    """MOD_ACCESS_CONTROL: `name` gets `level` (null, read, write, own) on an object or collection (one catalog
    write a call; `recursive` for a collection and everything below it)."""
    session.acls.set(iRODSAccess(level, path, name, zone), recursive=recursive)


def set_inherit(session: Any, coll: str, recursive: bool = False) -> None:
    session.acls.set(iRODSAccess("inherit", coll), recursive=recursive)


def collection_access(session: Any, coll: str) -> tuple[bool, dict[str, str]]:
    """A collection's inheritance flag and its ACLs ("name" or "name#zone" for another zone → catalog level)."""
    inherit = False
    for row in session.query(Collection.inheritance).filter(Collection.name == coll):
        inherit = str(row[Collection.inheritance] or "") == "1"
    levels = {int(row[CollectionAccess.user_id]): str(row[CollectionAccess.name])
              for row in session.query(CollectionAccess.name, CollectionAccess.user_id)
              .filter(Collection.name == coll)}
    out: dict[str, str] = {}
    if levels:
        q = session.query(User.id, User.name, User.zone).filter(In(User.id, list(levels)))
        for row in q:
            z = row[User.zone]
            who = row[User.name] if z == session.zone else f"{row[User.name]}#{z}"
            out[who] = levels[int(row[User.id])]
    return inherit, out


def principals(session: Any, names_: Iterable[str]) -> set[tuple[str, str]]:
    """Which of these user or group names exist in the catalog: {(name, zone)}."""
    wanted = sorted(set(names_))
    if not wanted:
        return set()
    q = session.query(User.name, User.zone).filter(In(User.name, wanted) if len(wanted) > 1
                                                   else User.name == wanted[0])
    return {(row[User.name], row[User.zone]) for row in q}


def user_type(session: Any) -> str:
    """The session's user's type (rodsadmin, rodsuser, groupadmin); '' if the catalog does not say."""
    q = session.query(User.type).filter(User.name == session.username).filter(User.zone == session.zone)
    return next((str(row[User.type]) for row in q), "")


def replicas(session: Any, path: str) -> list[Replica]:
    coll, _, name = path.rpartition("/")
    q = session.query(DataObject.replica_number, DataObject.resc_hier, DataObject.replica_status,
                      DataObject.checksum, DataObject.size).filter(Collection.name == coll) \
        .filter(DataObject.name == name)
    return sorted((Replica(int(r[DataObject.replica_number]), str(r[DataObject.resc_hier] or "").split(";")[0],
                           str(r[DataObject.replica_status]) == "1", r[DataObject.checksum] or "",
                           int(r[DataObject.size] or 0)) for r in q), key=lambda r: r.number)


def replicate(session: Any, path: str, resource: str) -> None:
    """A new replica on `resource` (a stale one there is updated), checksummed by the server from the bytes it
    wrote there and compared with the source replica's checksum (verifyChksum; the source must have one: iRODS 5
    refuses regChksum from a source that has one, and verifyChksum from one that has none)."""
    session.data_objects.replicate(path, resource=resource, verifyChksum="")


def replica_checksum(session: Any, path: str, number: int) -> str:
    """The server reads replica `number` and records its checksum."""
    return str(session.data_objects.chksum(path, replNum=str(number)) or "")


def vault_paths(session: Any, near: str = "") -> dict[str, str]:
    """Resource name → its vault path, for every resource that has one (coordinating resources do not); with
    `near` (a resource name), only those on its host (where it has none, as a coordinating resource, or is
    unknown: all): the paths a register on `near` names are that host's."""
    rows = list(session.query(Resource.name, Resource.vault_path, Resource.location))
    host = next((str(r[Resource.location] or "") for r in rows if r[Resource.name] == near), "") if near else ""
    host = "" if host == "EMPTY_RESC_HOST" else host
    return {str(r[Resource.name]): str(r[Resource.vault_path]) for r in rows
            if (r[Resource.vault_path] or "").startswith("/") and (not host or r[Resource.location] == host)}


# keep this line last: it times every public function above (irods_ingestd_irods_call_seconds{api=name})
metrics_irods.instrument(globals())
