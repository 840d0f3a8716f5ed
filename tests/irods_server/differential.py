"""Run the same python-irodsclient operations against the real iRODS and the test server, and compare.

A scenario is a function ``scenario(rec)`` that drives ``rec.sess`` under ``rec.base`` (a new collection)
and records what happens with ``rec.call(label, fn, ...)`` (the value returned, or the exception class and
iRODS error code raised) and ``rec.note(label, value)``. :class:`Differential` runs it once per server
and returns both records, normalised so that what legitimately differs reads the same: the collection
name (a uuid), the vault (``<vault>``), the directory of files to register (``<files>``), object ids,
timestamps and the random suffixes of names in the trash. Everything else is compared exactly.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from irods.api_number import api_number
from irods.collection import iRODSCollection
from irods.column import Like
from irods.data_object import iRODSDataObject
from irods.exception import NetworkException
from irods.manager.data_object_manager import Server_Checksum_Warning
from irods.message import CollectionRequest, GenQueryResponse, StringStringMap, iRODSMessage
from irods.models import Collection, CollectionMeta, DataObject, DataObjectMeta, Resource

from .harness import server_readable_dir

Observation = tuple[str, Any]


def outcome(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, ...]:
    """("ok", value) or ("error", exception class, iRODS error code); a checksum warning shows its codes."""
    try:
        return ("ok", simplify(fn(*args, **kwargs)))
    except Server_Checksum_Warning as exc:
        return ("error", "Server_Checksum_Warning", tuple(r.get("error_code") for r in exc.response))
    except NetworkException:
        raise  # the server went away: not an answer to compare
    except Exception as exc:  # noqa: BLE001 - the class is the observation
        return ("error", type(exc).__name__, getattr(exc, "code", None))


def simplify(value: Any) -> Any:
    if isinstance(value, iRODSDataObject):
        return ("data object", value.path, value.size, value.checksum, [r.status for r in value.replicas])
    if isinstance(value, iRODSCollection):
        return ("collection", value.path)
    if isinstance(value, list | tuple):
        return tuple(simplify(v) for v in value)
    return value


class Recorder:
    def __init__(self, server: Any, sess: Any, base: str, trash: str, files: Path) -> None:
        self.server = server  # for more sessions
        self.sess = sess
        self.base = base
        self.trash = trash  # where unlink and remove without force put what is under base
        self.files = files
        self.tag = base.rsplit("/", 1)[1]  # unique to this run (reads "<name>" once normalised)
        self.observations: list[Observation] = []

    def call(self, label: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        result = outcome(fn, *args, **kwargs)
        self.observations.append((label, result))
        return result

    def note(self, label: str, value: Any) -> None:
        self.observations.append((label, simplify(value)))

    def write(self, name: str, data: bytes, mode: int = 0o644) -> str:
        """A local file (in the directory the server can read) with these bytes; returns its path."""
        path = self.files / name
        path.write_bytes(data)
        path.chmod(mode)
        return str(path)

    def write_object(self, path: str, data: bytes, **options: str) -> None:
        with self.sess.data_objects.open(path, "w", **options) as f:
            f.write(data)

    def raw(self, api: str, msg: Any) -> int:
        """Send one API request as it is; returns the reply's status (an error raises)."""
        with self.sess.pool.get_connection() as conn:
            conn.send(iRODSMessage("RODS_API_REQ", msg=msg, int_info=api_number[api]))
            return int(conn.recv().int_info)

    def state(self, label: str = "state") -> None:
        """What GenQuery shows under the base collection and its trash: collections, objects, AVUs."""
        self.note(label, {"base": snapshot(self.sess, self.base), "trash": snapshot(self.sess, self.trash)})


def row_values(rows: Any, skip: tuple[str, ...]) -> list[tuple[Any, ...]]:
    """Rows as tuples in column-id order, without ids and timestamps (those differ between catalogs)."""
    return [tuple(v for c, v in sorted(r.items(), key=lambda cv: cv[0].icat_id)
                  if "TIME" not in c.icat_key and c.icat_key not in skip) for r in rows]  # fmt: skip


def open_statements(sess: Any, coll: str) -> list[tuple[int, int, int, int]]:
    """Two paged queries interleaved on one connection, then a close: (status, rowCnt, continueInx,
    totalRowCount) of each reply. A server keeps an open query as a numbered statement of the connection."""
    q1 = sess.query(DataObject.name).filter(Collection.name == coll).limit(300)
    q2 = sess.query(DataObject.size).filter(Collection.name == coll).limit(700)
    seen = []
    with sess.pool.get_connection() as conn:

        def send(q: Any) -> int:
            conn.send(iRODSMessage("RODS_API_REQ", msg=q._message(), int_info=api_number["GEN_QUERY_AN"]))
            reply = conn.recv()
            out = reply.get_main_message(GenQueryResponse)
            seen.append((reply.int_info, out.rowCnt, out.continueInx, out.totalRowCount))
            return int(out.continueInx)

        one, two = send(q1), send(q2)
        one = send(q1.continue_index(one))
        send(q2.continue_index(two))
        send(q1.continue_index(one).limit(0))
    return seen


def snapshot(sess: Any, base: str) -> dict[str, Any]:
    colls = sorted(r[Collection.name] for r in sess.query(Collection.name).filter(Like(Collection.name, base + "%")))
    objs = []
    for cond in (Collection.name == base, Like(Collection.name, base + "/%")):
        for r in sess.query(Collection.name, DataObject.name, DataObject.size, DataObject.checksum,
                            DataObject.replica_status, DataObject.replica_number, DataObject.type,
                            DataObject.resource_name, DataObject.resc_hier, DataObject.path,
                            DataObject.owner_name).filter(cond):  # fmt: skip
            objs.append((f"{r[Collection.name]}/{r[DataObject.name]}", r[DataObject.size], r[DataObject.checksum],
                         r[DataObject.replica_status], r[DataObject.replica_number], r[DataObject.type],
                         r[DataObject.resource_name], r[DataObject.resc_hier], r[DataObject.path],
                         r[DataObject.owner_name]))  # fmt: skip
    avus = [(f"{r[Collection.name]}/{r[DataObject.name]}", r[DataObjectMeta.name], r[DataObjectMeta.value],
             r[DataObjectMeta.units])
            for r in sess.query(Collection.name, DataObject.name, DataObjectMeta.name, DataObjectMeta.value,
                                DataObjectMeta.units).filter(Like(Collection.name, base + "%"))]  # fmt: skip
    cavus = [(r[Collection.name], r[CollectionMeta.name], r[CollectionMeta.value], r[CollectionMeta.units])
             for r in sess.query(Collection.name, CollectionMeta.name, CollectionMeta.value, CollectionMeta.units)
             .filter(Like(Collection.name, base + "%"))]  # fmt: skip
    return {"collections": colls, "objects": sorted(objs), "object AVUs": sorted(avus),
            "collection AVUs": sorted(cavus)}  # fmt: skip


class Normaliser:
    def __init__(self, replacements: dict[str, str]) -> None:
        # longest first, so that a path is replaced before a prefix of it
        self.pairs = sorted(((k, v) for k, v in replacements.items() if k), key=lambda kv: -len(kv[0]))

    def __call__(self, value: Any) -> Any:
        if isinstance(value, str):
            for old, new in self.pairs:
                value = value.replace(old, new)
            return re.sub(r"\.\d{8,10}$", ".<n>", value) if "trash" in value else value
        if isinstance(value, list | tuple):
            return type(value)(self(v) for v in value)
        if isinstance(value, dict):
            return {self(k): self(v) for k, v in value.items()}
        return value


def vault_of(sess: Any, resource: str = "demoResc") -> str:
    rows = sess.query(Resource.vault_path).filter(Resource.name == resource).all()
    return str(rows[0][Resource.vault_path]) if rows else ""


def wait_until_usable(server: Any, timeout: float = 90) -> None:
    """Wait for a server that is being restarted (other test runs reconfigure the real one)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with server.session() as s:
                s.collections.exists(server.home)
            return
        except NetworkException:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


class Differential:
    def __init__(self, servers: dict[str, Any]) -> None:
        self.servers = servers

    @contextmanager
    def recorder(self, server: Any) -> Iterator[Recorder]:
        base = f"{server.home}/fidelity-{uuid.uuid4().hex[:12]}"
        trash = f"/{server.zone}/trash" + base[len(f"/{server.zone}") :]
        with server_readable_dir("irods-fidelity-") as files, server.session() as sess:
            sess.collections.create(base)
            rec = Recorder(server, sess, base, trash, files)
            try:
                yield rec
            finally:
                for path in (base, trash):
                    if sess.collections.exists(path):
                        sess.collections.remove(path, recurse=True, force=True)
            norm = Normaliser({base: "<base>", trash: "<trash>", base.rsplit("/", 1)[1]: "<name>",
                               str(files): "<files>", vault_of(sess): "<vault>"})  # fmt: skip
            rec.observations = norm(rec.observations)

    def run(self, scenario: Callable[[Recorder], None]) -> dict[str, list[Observation]]:
        results: dict[str, list[Observation]] = {}
        for name, server in self.servers.items():
            for attempt in range(2):
                wait_until_usable(server)
                try:
                    with self.recorder(server) as rec:
                        scenario(rec)
                    break
                except NetworkException:
                    if attempt or not server.real:
                        raise  # a real server restarted by another test run gets one more try
            results[name] = rec.observations
        return results

    def assert_same(self, scenario: Callable[[Recorder], None]) -> None:
        """Run the scenario on both servers; fail listing every observation that differs."""
        results = self.run(scenario)
        assert results["real"], "the scenario recorded nothing"
        found = differences(results)
        assert not found, "the test server differs from the real iRODS:\n" + "\n".join(found)


def race_round(server: Any, sessions: list[Any], raw_api: bool) -> set[tuple[Any, ...]]:
    """Six sessions at once create a/b/c and the levels around it in a new tree (recursively, with the raw
    COLL_CREATE or python-irodsclient's create): the outcome classes seen."""
    base = f"{server.home}/race-{uuid.uuid4().hex[:8]}"
    targets = ["a", "a/b", "a/b/c", "a/b/c", "a/b/c/d1", "a/b/c/d2"]
    start = threading.Barrier(len(sessions))
    seen: list[Any] = [None] * len(sessions)

    def create(i: int) -> None:
        s, path = sessions[i], f"{base}/{targets[i]}"
        start.wait()
        if raw_api:
            msg = CollectionRequest(collName=path, KeyValPair_PI=StringStringMap({"recursiveOpr": ""}))
            with s.pool.get_connection() as conn:
                conn.send(iRODSMessage("RODS_API_REQ", msg=msg, int_info=api_number["COLL_CREATE_AN"]))
                result: tuple[Any, ...] = ("status", conn.recv().int_info)
        else:
            got = outcome(s.collections.create, path)
            result = got[:1] if got[0] == "ok" else got  # "ok" without the path
        seen[i] = (result, path)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(len(sessions))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    check = sessions[0]
    try:
        # what each create answered, and whether collections exist right after (not paired: whether a racing
        # session creates one a moment later is chance)
        classes = {("answer", result) for result, _ in seen}
        classes |= {("exists afterwards", check.collections.exists(path)) for _, path in seen}
        for s, (_, path) in zip(sessions, seen, strict=True):  # trying again always completes the tree
            s.collections.create(path)
        classes.add(("after a second create, all exist", all(check.collections.exists(p) for _, p in seen)))
    finally:
        if check.collections.exists(base):
            check.collections.remove(base, recurse=True, force=True)
    return classes


def differences(results: dict[str, list[Observation]]) -> list[str]:
    """Human-readable lines for every observation that differs between the two servers (empty: same)."""
    real, standin = results["real"], results["standin"]
    out = []
    for (label, r), (label2, s) in zip(real, standin, strict=False):
        if label != label2:
            out.append(f"the scenario diverged: {label!r} on the real server, {label2!r} on the test server")
            break
        if r != s:
            out.append(f"{label}:\n    real:    {r!r}\n    standin: {s!r}")
    if len(real) != len(standin):
        out.append(f"{len(real)} observations on the real server, {len(standin)} on the test server")
    return out
