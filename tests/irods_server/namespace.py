"""The logical namespace of the test server: collection create/remove, rename, unlink, and the trash.

Behaviour measured against a real iRODS 5.0.2 (see README.md):
- A recursive COLL_CREATE answers 0 even when it did not create the collection: it creates the missing
  levels one by one, and when another session created one of them meanwhile it stops there, "already
  exists", and reports success. Sessions racing for one tree can therefore find their collection missing.
- Unlink without force, and a recursive collection removal without force, move into
  ``/zone/trash/<path below the zone>``; a name taken in the trash gets a ``.<digits>`` suffix.
- A missing data object (or a collection given where an object is expected) is ``CAT_NO_ROWS_FOUND``
  for unlink, unregister and rename.
"""

from __future__ import annotations

import os
import posixpath
import random
import sqlite3
import time
import xml.etree.ElementTree as ET

from irods.message import CollectionRequest as CollInpNew
from irods.message import FileOpenRequest

from .base import ServerBase
from .catalog import now_ts
from .errors import E, IrodsError
from .wire import RENAME_COLL, RENAME_DATA_OBJ, UNREG_OPR, Conn, Reply, kvp, unpack

# A real server's agent makes several catalog round trips for each level of a recursive create: the time
# in which another session can create the same level.
COLL_LEVEL_SECONDS = 0.004


class NamespaceApi(ServerBase):
    coll_level_seconds: float = COLL_LEVEL_SECONDS

    # --- collections -------------------------------------------------------------------------
    def h_coll_create(self, conn: Conn, body: bytes, bs: bytearray) -> Reply:
        msg = unpack(CollInpNew, body)
        path = self.norm(msg._values.get("collName"))
        recursive = "recursiveOpr" in kvp(msg)
        with self.catalog.tx():
            if self.catalog.data(path) is not None:
                raise IrodsError(E.CAT_NAME_EXISTS_AS_DATAOBJ, path)
            if self.catalog.coll(path):
                if recursive:
                    return Reply(0)
                raise IrodsError(E.CATALOG_ALREADY_HAS_ITEM_BY_THAT_NAME, path)
            parent = posixpath.dirname(path)
            if not recursive:
                if not self.catalog.coll(parent):
                    raise IrodsError(E.CAT_UNKNOWN_COLLECTION, parent)
                self.catalog.insert_coll(path, conn.user or "")
                return Reply(0)
            missing = [path]
            p = parent
            while p != "/" and not self.catalog.coll(p):
                if self.catalog.data(p) is not None:
                    raise IrodsError(E.CAT_NAME_EXISTS_AS_DATAOBJ, p)
                missing.append(p)
                p = posixpath.dirname(p)
        for p in reversed(missing):  # top down, one level at a time, as a real server does
            if self.coll_level_seconds:
                time.sleep(self.coll_level_seconds)
            with self.catalog.tx():
                if self.catalog.coll(p):
                    return Reply(0)  # another session made this level: "already exists" ends the walk
                if self.catalog.data(p) is not None:
                    raise IrodsError(E.CAT_NAME_EXISTS_AS_DATAOBJ, p)
                self.catalog.insert_coll(p, conn.user or "")
        return Reply(0)

    def h_rm_coll(self, conn: Conn, body: bytes, bs: bytearray) -> Reply:
        msg = unpack(CollInpNew, body)
        path = self.norm(msg._values.get("collName"))
        kw = kvp(msg)
        recursive, force = "recursiveOpr" in kw, "forceFlag" in kw
        with self.catalog.tx() as db:
            if not self.catalog.coll(path):
                if not recursive:
                    raise IrodsError(E.CAT_UNKNOWN_COLLECTION, path)
                raise IrodsError(E.USER_FILE_DOES_NOT_EXIST if force else E.CAT_NO_ROWS_FOUND, path)
            colls = self.catalog.subtree_colls(path)
            ids = [c[0] for c in colls]
            marks = ",".join("?" * len(ids))
            data = db.execute(f"SELECT data_id, data_path FROM data WHERE coll_id IN ({marks})", ids).fetchall()
            if not recursive and (len(colls) > 1 or data):
                raise IrodsError(E.CAT_COLLECTION_NOT_EMPTY, path)
            if recursive and not force and not self.in_trash(path):
                self._move_coll(db, path, self._trash_target(path))
                return Reply(0)
            for data_id, phys in data:
                self.catalog.delete_data(data_id)
                self.remove_phys(phys)
            db.execute(f"DELETE FROM colls WHERE coll_id IN ({marks})", ids)
            db.execute(f"DELETE FROM metamap WHERE obj_type='C' AND obj_id IN ({marks})", ids)
            db.execute(f"DELETE FROM access WHERE obj_id IN ({marks})", ids)
        return Reply(0)

    # --- rename ------------------------------------------------------------------------------
    def h_rename(self, conn: Conn, body: bytes, bs: bytearray) -> Reply:
        # PRC packs both halves as <DataObjInp_PI> elements (its property names do not appear on the wire)
        try:
            parts = ET.fromstring(body.replace(b"\0", b"")).findall("DataObjInp_PI")
        except ET.ParseError as exc:
            raise IrodsError(E.SYS_API_INPUT_ERR, f"cannot parse request: {exc}") from exc
        if len(parts) != 2:
            raise IrodsError(E.SYS_API_INPUT_ERR, "DataObjCopyInp_PI needs two DataObjInp_PI")
        src_inp, dst_inp = FileOpenRequest(), FileOpenRequest()
        src_inp.unpack(parts[0])
        dst_inp.unpack(parts[1])
        src = self.norm(src_inp._values.get("objPath"))
        dst = self.norm(dst_inp._values.get("objPath"))
        opr = src_inp._values.get("oprType") or 0
        if src == dst:
            raise IrodsError(E.SAME_SRC_DEST_PATHS_ERR, src)
        with self.catalog.tx() as db:
            row = self.catalog.data(src) if opr != RENAME_COLL else None
            is_coll = row is None and opr != RENAME_DATA_OBJ and bool(self.catalog.coll(src))
            if row is None and not is_coll:
                raise IrodsError(E.CAT_NO_ROWS_FOUND, src)
            if self.catalog.coll(dst):
                raise IrodsError(E.CAT_NAME_EXISTS_AS_COLLECTION, dst)
            if self.catalog.data(dst) is not None:
                raise IrodsError(E.CAT_NAME_EXISTS_AS_DATAOBJ, dst)
            if not self.catalog.coll(posixpath.dirname(dst)):
                raise IrodsError(E.CAT_UNKNOWN_COLLECTION, posixpath.dirname(dst))
            if row is not None:
                self._move_object(row, dst)
                return Reply(0)
            if dst.startswith(src + "/"):
                raise IrodsError(E.SAME_SRC_DEST_PATHS_ERR, "cannot move a collection into itself")
            self._move_coll(db, src, dst)
        return Reply(0)

    def _move_object(self, row: sqlite3.Row, dst: str) -> None:
        """Give a data object a new logical path (its parent must exist); a file in the vault moves along."""
        dst_parent = self.catalog.coll(posixpath.dirname(dst))
        assert dst_parent is not None
        new_phys = row["data_path"]
        if self.in_vault(row["data_path"]):
            new_phys = self.vault_path(dst)
            os.makedirs(os.path.dirname(new_phys), exist_ok=True)
            if os.path.exists(row["data_path"]):
                os.replace(row["data_path"], new_phys)
        self.catalog.update_data(row["data_id"], coll_id=dst_parent[0], data_name=posixpath.basename(dst),
                                 data_path=new_phys, modify_ts=now_ts())  # fmt: skip

    def _move_coll(self, db: sqlite3.Connection, src: str, dst: str) -> None:
        for coll_id, name in self.catalog.subtree_colls(src):
            new = dst + name[len(src) :]
            db.execute("UPDATE colls SET coll_name=?, parent_name=?, modify_ts=? WHERE coll_id=?",
                       (new, posixpath.dirname(new), now_ts(), coll_id))  # fmt: skip
        old_vdir, new_vdir = self.vault_path(src), self.vault_path(dst)
        if os.path.isdir(old_vdir):
            os.makedirs(os.path.dirname(new_vdir), exist_ok=True)
            os.replace(old_vdir, new_vdir)
            prefix = old_vdir + os.sep
            db.execute(
                "UPDATE data SET data_path = ? || substr(data_path, ?) WHERE substr(data_path, 1, ?) = ?",
                (new_vdir + os.sep, len(prefix) + 1, len(prefix), prefix),
            )

    # --- unlink and the trash ----------------------------------------------------------------
    def h_unlink(self, conn: Conn, body: bytes, bs: bytearray) -> Reply:
        msg = unpack(FileOpenRequest, body)
        path = self.norm(msg._values.get("objPath"))
        kw = kvp(msg)
        with self.catalog.tx():
            row = self.catalog.data(path)
            if row is None:
                raise IrodsError(E.CAT_NO_ROWS_FOUND, path)
            unregister = (msg._values.get("oprType") or 0) == UNREG_OPR or kw.get("oprType") == str(UNREG_OPR)
            if not unregister and "forceFlag" not in kw and not self.in_trash(path):
                self._move_object(row, self._trash_target(path))
                return Reply(0)
            self.catalog.delete_data(row["data_id"])
            if not unregister:
                self.remove_phys(row["data_path"])
        return Reply(0)

    def in_trash(self, path: str) -> bool:
        return path.startswith(f"/{self.zone}/trash/")

    def _trash_target(self, path: str) -> str:
        """Where unlink/remove without force puts `path`: its place under /zone/trash (parents created)."""
        target = f"/{self.zone}/trash" + path[len(f"/{self.zone}") :]
        parent = posixpath.dirname(target)
        missing = []
        p = parent
        while not self.catalog.coll(p):
            missing.append(p)
            p = posixpath.dirname(p)
        for p in reversed(missing):
            self.catalog.insert_coll(p, self.catalog_owner(path))
        while self.catalog.coll(target) or self.catalog.data(target) is not None:
            target = f"{posixpath.join(parent, posixpath.basename(path))}.{random.randrange(10**8, 10**10)}"
        return target

    def catalog_owner(self, path: str) -> str:
        """The user whose home `path` is under (owner of the trash collections made for it)."""
        parts = path.split("/")
        return parts[3] if len(parts) > 3 and parts[2] == "home" else self.catalog_admin()

    def catalog_admin(self) -> str:
        row = self.catalog.q1("SELECT user_name FROM users WHERE user_type='rodsadmin' ORDER BY user_id LIMIT 1")
        return row[0] if row else "rods"
