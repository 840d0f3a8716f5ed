"""Metadata (MOD_AVU_METADATA, ATOMIC_APPLY_METADATA_OPERATIONS), ACLs and GenQuery of the test server.

As a real iRODS 5.0.2 answers: ``rmw`` and ``adda`` are refused (CAT_INVALID_ARGUMENT), removing or
modifying an AVU that is not there is CAT_SUCCESS_BUT_WITH_NO_INFO, an atomic request for a missing
object or collection is SYS_INVALID_INPUT_PARAM; within one atomic request, adding an AVU that exists
and removing one that does not are no errors.
"""

from __future__ import annotations

from irods.message import GenQueryRequest, MetadataRequest, ModAclRequest

from .avus import Avus
from .base import ServerBase
from .catalog import ACCESS_ALIASES, ACCESS_CODES
from .errors import DropConnection, E, IrodsError
from .wire import Conn, Reply, json_reply, unpack, unpack_json, xesc

RETURN_TOTAL_ROW_COUNT = 0x20
# what a real server sends after a close: no rows, no columns, and MAX_SQL_ATTR empty results
EMPTY_RESULTS = "<SqlResult_PI><attriInx>0</attriInx><reslen>0</reslen></SqlResult_PI>" * 50


class CatalogApi(ServerBase):
    avus: Avus

    # --- metadata ----------------------------------------------------------------------------
    def _target(self, kind: str, name: str) -> tuple[int, str]:
        kind = kind.lstrip("-")
        if kind in ("d", "D"):
            row = self.catalog.data(self.norm(name))
            if row is None:
                raise IrodsError(E.CAT_UNKNOWN_FILE, name)
            return row["data_id"], "d"
        if kind in ("C", "c"):
            crow = self.catalog.coll(self.norm(name))
            if not crow:
                raise IrodsError(E.CAT_UNKNOWN_COLLECTION, name)
            return crow[0], "C"
        if kind in ("R", "r"):
            rrow = self.catalog.q1("SELECT resc_id FROM resources WHERE resc_name=?", (name,))
            if not rrow:
                raise IrodsError(E.SYS_RESC_DOES_NOT_EXIST, name)
            return rrow[0], "R"
        if kind == "u":
            urow = self.catalog.user(name)
            if not urow:
                raise IrodsError(E.CAT_INVALID_USER, name)
            return urow[0], "u"
        raise IrodsError(E.CAT_INVALID_ARGUMENT, f"bad object type {kind!r}")

    def h_mod_avu(self, conn: Conn, body: bytes, bs: bytearray) -> Reply:
        msg = unpack(MetadataRequest, body)
        a = [msg._values.get(f"arg{i}") or "" for i in range(10)]
        op = a[0].lower()
        if op == "cp":
            self.avus.copy(self._target(a[1], a[3]), self._target(a[2], a[4]))
            return Reply(0)
        if op not in ("add", "set", "rm", "rmi", "mod"):  # iRODS 5 has no rmw or adda any more
            raise IrodsError(E.CAT_INVALID_ARGUMENT, f"unsupported metadata operation {op!r}")
        obj = self._target(a[1], a[2])
        if op == "add":
            self.avus.add(obj, a[3], a[4], a[5])
        elif op == "set":
            self.avus.set(obj, a[3], a[4], a[5])
        elif op == "rm":
            if not self.avus.remove(obj, a[3], a[4], a[5]):
                raise IrodsError(E.CAT_SUCCESS_BUT_WITH_NO_INFO, f"no AVU {a[3]}={a[4]} to remove")
        elif op == "rmi":
            self.avus.remove_id(obj, a[3])
        else:  # mod NAME VALUE [UNITS] [n:NAME] [v:VALUE] [u:UNITS]
            rest = a[5:]
            units = None
            if rest and rest[0] and not rest[0].startswith(("n:", "v:", "u:")):
                units, rest = rest[0], rest[1:]
            self.avus.modify(obj, a[3], a[4], units, rest)
        return Reply(0)

    def h_atomic_metadata(self, conn: Conn, body: bytes, bs: bytearray) -> Reply:
        req = unpack_json(body)
        kinds = {"data_object": "d", "collection": "C", "resource": "R", "user": "u"}
        kind = kinds.get(req.get("entity_type", ""))
        if kind is None:
            raise IrodsError(E.SYS_INVALID_INPUT_PARAM, f"bad entity_type {req.get('entity_type')!r}")
        try:
            obj = self._target(kind, req.get("entity_name", ""))
        except IrodsError as exc:  # a real server: "invalid input" for an object it cannot find
            raise IrodsError(E.SYS_INVALID_INPUT_PARAM, exc.msg) from exc
        with self.catalog.tx():
            for i, op in enumerate(req.get("operations", [])):
                name, value, units = op.get("attribute", ""), op.get("value", ""), op.get("units", "")
                try:
                    if op.get("operation") == "add":
                        self.avus.add(obj, name, value, units, atomic=True)
                    elif op.get("operation") == "remove":
                        self.avus.remove(obj, name, value, units)
                    else:
                        raise IrodsError(E.SYS_INVALID_INPUT_PARAM, f"bad operation {op.get('operation')!r}")
                except IrodsError as exc:
                    raise IrodsError(exc.code, f"operation {i}: {exc.msg}") from exc
        return Reply(0, json_reply({}))

    # --- ACLs --------------------------------------------------------------------------------
    def h_mod_acl(self, conn: Conn, body: bytes, bs: bytearray) -> Reply:
        msg = unpack(ModAclRequest, body)
        level = (msg._values.get("accessLevel") or "").strip()
        if level.startswith("admin:"):
            level = level[len("admin:") :]
        level = ACCESS_ALIASES.get(level, level).replace(" ", "_")
        path = self.norm(msg._values.get("path"))
        recursive = bool(msg._values.get("recursiveFlag"))
        with self.catalog.tx() as db:
            row = self.catalog.data(path)
            coll = None if row is not None else self.catalog.coll(path)
            if row is None and coll is None:
                raise IrodsError(E.CAT_UNKNOWN_FILE, path)
            if level in ("inherit", "noinherit"):
                if coll is None:
                    raise IrodsError(E.CAT_INVALID_ARGUMENT, "inheritance applies to collections")
                flag = "1" if level == "inherit" else ""
                targets = self.catalog.subtree_colls(path) if recursive else [coll[:2]]
                for cid, _ in targets:
                    db.execute("UPDATE colls SET inheritance=? WHERE coll_id=?", (flag, cid))
                return Reply(0)
            if level not in ACCESS_CODES:
                raise IrodsError(E.CAT_INVALID_ARGUMENT, f"bad access level {level!r}")
            user = self.catalog.user(msg._values.get("userName") or "")
            if user is None:
                raise IrodsError(E.CAT_INVALID_USER, msg._values.get("userName") or "")
            ids = [row["data_id"]] if row is not None else [coll[0] if coll else 0]
            if coll is not None and recursive:
                colls = [c[0] for c in self.catalog.subtree_colls(path)]
                marks = ",".join("?" * len(colls))
                ids = colls + [r[0] for r in db.execute(f"SELECT data_id FROM data WHERE coll_id IN ({marks})", colls)]
            for obj_id in ids:
                self.catalog.set_access(db, obj_id, user[0], level)
        return Reply(0)

    # --- GenQuery ----------------------------------------------------------------------------
    def h_gen_query(self, conn: Conn, body: bytes, bs: bytearray) -> Reply:
        """A query whose rows do not fit in one page stays open on this connection as a numbered statement
        (1, 2, ...: the smallest free number) that continueInx names, until its last page or a close."""
        msg = unpack(GenQueryRequest, body)
        v = msg._values
        max_rows = v.get("maxRows") or 0
        cont = v.get("continueInx") or 0
        if cont > 0:
            if cont not in conn.statements:  # a real agent dies of it
                raise DropConnection(f"no open query {cont}")
            cols, rows, start = conn.statements.pop(cont)
        elif max_rows > 0:
            cols, rows = self.catalog.genquery(*self._query_args(v))
            start = v.get("partialStartIndex") or 0
        if max_rows <= 0:  # a close
            return Reply(0, "<GenQueryOut_PI><rowCnt>0</rowCnt><attriCnt>0</attriCnt><continueInx>0</continueInx>"
                         "<totalRowCount>0</totalRowCount>" + EMPTY_RESULTS + "</GenQueryOut_PI>")
        page = rows[start : start + max_rows]
        if not page:
            raise IrodsError(E.CAT_NO_ROWS_FOUND, "no rows found")
        nxt = 0
        if start + max_rows < len(rows):
            nxt = cont or min(set(range(1, len(conn.statements) + 2)) - set(conn.statements))
            conn.statements[nxt] = (cols, rows, start + max_rows)
        total = len(rows) if (v.get("options") or 0) & RETURN_TOTAL_ROW_COUNT else 0
        parts = [
            f"<GenQueryOut_PI><rowCnt>{len(page)}</rowCnt><attriCnt>{len(cols)}</attriCnt>"
            f"<continueInx>{nxt}</continueInx><totalRowCount>{total}</totalRowCount>"
        ]
        for i, col in enumerate(cols):
            parts.append(f"<SqlResult_PI><attriInx>{col}</attriInx><reslen>{256}</reslen>")
            parts.extend(f"<value>{xesc(r[i])}</value>" for r in page)
            parts.append("</SqlResult_PI>")
        parts.append("</GenQueryOut_PI>")
        return Reply(0, "".join(parts))

    @staticmethod
    def _query_args(v: dict) -> tuple[list[tuple[int, int]], list[tuple[int, str]], int]:
        sel = v.get("InxIvalPair_PI")
        cond = v.get("InxValPair_PI")
        selects = list(zip(sel._values.get("inx") or [], sel._values.get("ivalue") or [], strict=False)) if sel else []
        conds = (
            list(zip(cond._values.get("inx") or [], [s or "" for s in cond._values.get("svalue") or []],
                     strict=False)) if cond else []
        )  # fmt: skip
        if not selects:
            raise IrodsError(E.SYS_INVALID_INPUT_PARAM, "no columns selected")
        return selects, conds, v.get("options") or 0
