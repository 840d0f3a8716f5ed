"""SQLite catalog of the iRODS test server: collections, data objects, AVUs, ACLs, users, and GenQuery.

All access goes through one connection guarded by one lock (the server is threaded; SQLite work is
small next to the socket I/O). Timestamps are stored as 11-digit zero-padded epoch strings, as the
iRODS catalog does, so string comparisons in GenQuery conditions behave like a real server's.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from .errors import E, IrodsError

SCHEMA = """
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS zones (zone_id INTEGER PRIMARY KEY, zone_name TEXT UNIQUE, zone_type TEXT);
CREATE TABLE IF NOT EXISTS users (
    user_id INTEGER PRIMARY KEY, user_name TEXT, user_type TEXT, zone_name TEXT, info TEXT,
    comment TEXT, create_ts TEXT, modify_ts TEXT, password TEXT, UNIQUE(user_name, zone_name));
CREATE TABLE IF NOT EXISTS resources (
    resc_id INTEGER PRIMARY KEY, resc_name TEXT UNIQUE, zone_name TEXT, resc_type TEXT, resc_class TEXT,
    resc_loc TEXT, vault_path TEXT, free_space TEXT, comment TEXT, create_ts TEXT, modify_ts TEXT,
    status TEXT, free_space_ts TEXT, children TEXT, context TEXT, parent TEXT, parent_context TEXT);
CREATE TABLE IF NOT EXISTS colls (
    coll_id INTEGER PRIMARY KEY, coll_name TEXT UNIQUE NOT NULL, parent_name TEXT, owner_name TEXT,
    owner_zone TEXT, map_id INTEGER DEFAULT 0, inheritance TEXT DEFAULT '', comments TEXT DEFAULT '',
    create_ts TEXT, modify_ts TEXT);
CREATE TABLE IF NOT EXISTS data (
    data_id INTEGER PRIMARY KEY, coll_id INTEGER NOT NULL, data_name TEXT NOT NULL,
    repl_num INTEGER DEFAULT 0, version TEXT DEFAULT '', data_type TEXT DEFAULT 'generic',
    data_size INTEGER DEFAULT 0, resc_name TEXT, data_path TEXT, owner_name TEXT, owner_zone TEXT,
    repl_status INTEGER DEFAULT 0, data_status TEXT DEFAULT '', checksum TEXT DEFAULT '',
    expiry TEXT DEFAULT '00000000000', map_id INTEGER DEFAULT 0, comments TEXT DEFAULT '',
    create_ts TEXT, modify_ts TEXT, resc_hier TEXT, resc_id INTEGER, access_ts TEXT,
    UNIQUE(coll_id, data_name));
CREATE TABLE IF NOT EXISTS access (
    obj_id INTEGER NOT NULL, user_id INTEGER NOT NULL, access_type INTEGER NOT NULL,
    access_name TEXT NOT NULL, create_ts TEXT, modify_ts TEXT, PRIMARY KEY(obj_id, user_id));
"""

# iRODS 4.3 access names and codes (same table as the server's and PRC's access.py).
ACCESS_CODES = {
    "null": 1000, "execute": 1010, "read_annotation": 1020, "read_system_metadata": 1030,
    "read_metadata": 1040, "read_object": 1050, "write_annotation": 1060, "create_metadata": 1070,
    "modify_metadata": 1080, "delete_metadata": 1090, "administer_object": 1100, "create_object": 1110,
    "modify_object": 1120, "delete_object": 1130, "create_token": 1140, "delete_token": 1150,
    "curate": 1160, "own": 1200,
}  # fmt: skip
ACCESS_ALIASES = {"read": "read_object", "write": "modify_object", "read object": "read_object",
                  "modify object": "modify_object"}  # fmt: skip


def now_ts() -> str:
    return f"{int(time.time()):011d}"


# --- GenQuery column table: id -> (table alias, SQL expression, kind) -------------------------------
# kind: "int" (integer column), "str", "ts" (11-digit string timestamp)
COLUMNS: dict[int, tuple[str, str, str]] = {
    101: ("Z", "Z.zone_id", "int"), 102: ("Z", "Z.zone_name", "str"), 103: ("Z", "Z.zone_type", "str"),
    201: ("U", "U.user_id", "int"), 202: ("U", "U.user_name", "str"), 203: ("U", "U.user_type", "str"),
    204: ("U", "U.zone_name", "str"), 206: ("U", "U.info", "str"), 207: ("U", "U.comment", "str"),
    208: ("U", "U.create_ts", "ts"), 209: ("U", "U.modify_ts", "ts"),
    301: ("R", "R.resc_id", "int"), 302: ("R", "R.resc_name", "str"), 303: ("R", "R.zone_name", "str"),
    304: ("R", "R.resc_type", "str"), 305: ("R", "R.resc_class", "str"), 306: ("R", "R.resc_loc", "str"),
    307: ("R", "R.vault_path", "str"), 308: ("R", "R.free_space", "str"), 310: ("R", "R.comment", "str"),
    311: ("R", "R.create_ts", "ts"), 312: ("R", "R.modify_ts", "ts"), 313: ("R", "R.status", "str"),
    314: ("R", "R.free_space_ts", "ts"), 315: ("R", "R.children", "str"), 316: ("R", "R.context", "str"),
    317: ("R", "R.parent", "str"), 318: ("R", "R.parent_context", "str"),
    401: ("D", "D.data_id", "int"), 402: ("D", "D.coll_id", "int"), 403: ("D", "D.data_name", "str"),
    404: ("D", "D.repl_num", "int"), 405: ("D", "D.version", "str"), 406: ("D", "D.data_type", "str"),
    407: ("D", "D.data_size", "int"), 409: ("D", "D.resc_name", "str"), 410: ("D", "D.data_path", "str"),
    411: ("D", "D.owner_name", "str"), 412: ("D", "D.owner_zone", "str"),
    413: ("D", "D.repl_status", "int"), 414: ("D", "D.data_status", "str"),
    415: ("D", "D.checksum", "str"), 416: ("D", "D.expiry", "str"), 417: ("D", "D.map_id", "int"),
    418: ("D", "D.comments", "str"), 419: ("D", "D.create_ts", "ts"), 420: ("D", "D.modify_ts", "ts"),
    422: ("D", "D.resc_hier", "str"), 423: ("D", "D.resc_id", "int"), 424: ("D", "D.access_ts", "ts"),
    500: ("C", "C.coll_id", "int"), 501: ("C", "C.coll_name", "str"), 502: ("C", "C.parent_name", "str"),
    503: ("C", "C.owner_name", "str"), 504: ("C", "C.owner_zone", "str"), 505: ("C", "C.map_id", "int"),
    506: ("C", "C.inheritance", "str"), 507: ("C", "C.comments", "str"),
    508: ("C", "C.create_ts", "ts"), 509: ("C", "C.modify_ts", "ts"),
    700: ("DA", "DA.access_type", "int"), 701: ("DA", "DA.access_name", "str"),
    702: ("DA", "'access_type'", "str"), 703: ("DA", "DA.user_id", "int"), 704: ("DA", "DA.obj_id", "int"),
    710: ("CA", "CA.access_type", "int"), 711: ("CA", "CA.access_name", "str"),
    712: ("CA", "'access_type'", "str"), 713: ("CA", "CA.user_id", "int"), 714: ("CA", "CA.obj_id", "int"),
    1300: ("CU", "CU.user_name", "str"), 1301: ("CU", "CU.zone_name", "str"),
}  # fmt: skip
for _base, _alias in ((600, "DM"), (610, "CM"), (630, "RM"), (640, "UM")):
    COLUMNS[_base] = (_alias, f"{_alias}.name", "str")
    COLUMNS[_base + 1] = (_alias, f"{_alias}.value", "str")
    COLUMNS[_base + 2] = (_alias, f"{_alias}.units", "str")
    COLUMNS[_base + 3] = (_alias, f"{_alias}.meta_id", "int")
    COLUMNS[_base + 4] = (_alias, f"{_alias}.create_ts", "ts")
    COLUMNS[_base + 5] = (_alias, f"{_alias}.modify_ts", "ts")

# order in which tables are added to FROM, with their table and join condition builders
_TABLE_ORDER = ["C", "D", "R", "DM", "CM", "DA", "CA", "U", "CU", "UM", "RM", "Z"]
_TABLE_NAME = {"C": "colls", "D": "data", "R": "resources", "DM": "avu", "CM": "avu", "DA": "access",
               "CA": "access", "U": "users", "CU": "users", "UM": "avu", "RM": "avu", "Z": "zones"}  # fmt: skip


def _join_condition(alias: str, present: set[str]) -> str | None:
    if alias == "D" and "C" in present:
        return "D.coll_id = C.coll_id"
    if alias == "R" and "D" in present:
        return "R.resc_name = D.resc_name"
    if alias == "DM":
        return "DM.obj_id = D.data_id AND DM.obj_type = 'd'"
    if alias == "CM":
        return "CM.obj_id = C.coll_id AND CM.obj_type = 'C'"
    if alias == "UM":
        return "UM.obj_id = U.user_id AND UM.obj_type = 'u'"
    if alias == "RM":
        return "RM.obj_id = R.resc_id AND RM.obj_type = 'R'"
    if alias == "DA":
        return "DA.obj_id = D.data_id"
    if alias == "CA":
        return "CA.obj_id = C.coll_id"
    if alias == "U":
        if "DA" in present:
            return "U.user_id = DA.user_id"
        if "CA" in present:
            return "U.user_id = CA.user_id"
    if alias == "CU":
        return "CU.user_id = CA.user_id"
    if alias == "Z" and "U" in present:
        return "Z.zone_name = U.zone_name"
    return None


def _expand(needed: set[str]) -> set[str]:
    needed = set(needed)
    deps = {"DM": "D", "CM": "C", "DA": "D", "CA": "C", "CU": "CA", "UM": "U", "RM": "R"}
    changed = True
    while changed:
        changed = False
        for a, d in deps.items():
            if a in needed and d not in needed:
                needed.add(d)
                changed = True
        # users are joined to objects through the access tables, as in the iRODS catalog
        if "U" in needed and "D" in needed and "DA" not in needed:
            needed.add("DA")
            changed = True
        if "U" in needed and "C" in needed and "D" not in needed and "CA" not in needed:
            needed.add("CA")
            changed = True
    return needed


def _strip_quotes(text: str) -> str:
    text = text.strip()
    first, last = text.find("'"), text.rfind("'")
    if first == -1 or last <= first:
        return text
    return text[first + 1 : last]


def parse_condition(expr: str, sql_col: str) -> tuple[str, list[Any]]:
    """Turn a GenQuery condition string such as ``= 'x'`` or ``in ('a','b')`` into SQL."""
    s = expr.strip()
    low = s.lower()
    for op in ("not like", "like"):
        if low.startswith(op + " ") or low.startswith(op + "'"):
            return f"{sql_col} {op.upper()} ?", [_strip_quotes(s[len(op) :])]
    for op in ("not in", "in"):
        if low.startswith(op + " ") or low.startswith(op + "("):
            rest = s[len(op) :].strip()
            if rest.startswith("(") and rest.endswith(")"):
                rest = rest[1:-1]
            inner = rest.strip()
            if inner.startswith("'") and inner.endswith("'"):
                inner = inner[1:-1]
            values = [v for part in inner.split("','") for v in part.split("', '")]
            marks = ",".join("?" * len(values))
            return f"{sql_col} {op.upper()} ({marks})", values
    if low.startswith("between "):
        rest = s[len("between ") :].strip()
        idx = rest.find("' '")
        if idx == -1:
            raise IrodsError(E.CAT_INVALID_ARGUMENT, f"bad between condition: {expr}")
        return f"{sql_col} BETWEEN ? AND ?", [rest[1:idx], rest[idx + 3 : -1]]
    for op in ("<>", "!=", "<=", ">=", "=", "<", ">"):
        if s.startswith(op):
            sqlop = "<>" if op == "!=" else op
            return f"{sql_col} {sqlop} ?", [_strip_quotes(s[len(op) :])]
    raise IrodsError(E.CAT_INVALID_ARGUMENT, f"unsupported condition: {expr}")


class Catalog:
    def __init__(self, path: str, zone: str, resource: str, vault: str):
        self.zone = zone
        self.resource = resource
        self.vault = vault
        self.lock = threading.RLock()
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=OFF")
        self.db.execute("PRAGMA case_sensitive_like=ON")
        self.db.executescript(SCHEMA)
        from .avus import install  # AVU rows shared between objects, and the `avu` view GenQuery reads

        install(self.db)
        self._in_tx = 0

    def close(self) -> None:
        with self.lock:
            self.db.close()

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """A transaction (nested calls join the outer one)."""
        with self.lock:
            if self._in_tx:
                self._in_tx += 1
                try:
                    yield self.db
                finally:
                    self._in_tx -= 1
                return
            self._in_tx = 1
            self.db.execute("BEGIN")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            else:
                self.db.execute("COMMIT")
            finally:
                self._in_tx = 0

    def q(self, sql: str, params: Iterable[Any] = ()) -> list[tuple]:
        with self.lock:
            return self.db.execute(sql, tuple(params)).fetchall()

    def q1(self, sql: str, params: Iterable[Any] = ()) -> tuple | None:
        rows = self.q(sql, params)
        return rows[0] if rows else None

    def next_id(self) -> int:
        with self.tx() as db:
            row = db.execute("SELECT value FROM counters WHERE name='id'").fetchone()
            value = (row[0] if row else 10000) + 1
            db.execute("INSERT OR REPLACE INTO counters(name, value) VALUES('id', ?)", (value,))
            return value

    # --- setup -------------------------------------------------------------------------------
    def bootstrap(self, users: list[tuple[str, str, str]]) -> None:
        """Create zone, resource, users (name, password, type) and their home/trash collections."""
        ts = now_ts()
        with self.tx() as db:
            if not db.execute("SELECT 1 FROM zones WHERE zone_name=?", (self.zone,)).fetchone():
                db.execute("INSERT INTO zones VALUES(?,?,?)", (self.next_id(), self.zone, "local"))
            if not db.execute("SELECT 1 FROM resources WHERE resc_name=?", (self.resource,)).fetchone():
                db.execute(
                    "INSERT INTO resources VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (self.next_id(), self.resource, self.zone, "unixfilesystem", "cache", "localhost",
                     self.vault, "", "", ts, ts, "", "", "", "", "", ""),
                )  # fmt: skip
            all_users = [*users, ("public", "", "rodsgroup")]
            for name, password, utype in all_users:
                row = db.execute(
                    "SELECT user_id FROM users WHERE user_name=? AND zone_name=?", (name, self.zone)
                ).fetchone()
                if row:
                    db.execute("UPDATE users SET password=? WHERE user_id=?", (password, row[0]))
                else:
                    db.execute(
                        "INSERT INTO users VALUES(?,?,?,?,?,?,?,?,?)",
                        (self.next_id(), name, utype, self.zone, "", "", ts, ts, password),
                    )
            admin = users[0][0]
            for path in ("/", f"/{self.zone}", f"/{self.zone}/home", f"/{self.zone}/trash",
                         f"/{self.zone}/trash/home"):  # fmt: skip
                self.ensure_coll(path, admin)
            for name, _pw, utype in users:
                if utype != "rodsgroup":
                    self.ensure_coll(f"/{self.zone}/home/{name}", name)
                    self.ensure_coll(f"/{self.zone}/trash/home/{name}", name)

    def ensure_coll(self, path: str, owner: str) -> int:
        row = self.q1("SELECT coll_id FROM colls WHERE coll_name=?", (path,))
        if row:
            return row[0]
        return self.insert_coll(path, owner)

    # --- lookups -----------------------------------------------------------------------------
    def user(self, name: str) -> tuple | None:
        if "#" in name:
            name = name.split("#", 1)[0]
        return self.q1("SELECT user_id, user_name, user_type, password FROM users WHERE user_name=?", (name,))

    def coll(self, path: str) -> tuple | None:
        return self.q1("SELECT coll_id, coll_name, inheritance FROM colls WHERE coll_name=?", (path,))

    def data(self, path: str) -> sqlite3.Row | None:
        parent, _, name = path.rpartition("/")
        with self.lock:
            self.db.row_factory = sqlite3.Row
            try:
                return self.db.execute(
                    "SELECT D.* FROM data D JOIN colls C ON D.coll_id=C.coll_id "
                    "WHERE C.coll_name=? AND D.data_name=?",
                    (parent or "/", name),
                ).fetchone()
            finally:
                self.db.row_factory = None

    def data_by_id(self, data_id: int) -> sqlite3.Row | None:
        with self.lock:
            self.db.row_factory = sqlite3.Row
            try:
                return self.db.execute("SELECT * FROM data WHERE data_id=?", (data_id,)).fetchone()
            finally:
                self.db.row_factory = None

    # --- mutations ---------------------------------------------------------------------------
    def _inherit_acls(self, db: sqlite3.Connection, parent_path: str, obj_id: int, ts: str) -> None:
        parent = db.execute("SELECT coll_id, inheritance FROM colls WHERE coll_name=?", (parent_path,)).fetchone()
        if parent and parent[1] == "1":
            db.execute(
                "INSERT OR IGNORE INTO access SELECT ?, user_id, access_type, access_name, ?, ? "
                "FROM access WHERE obj_id=?",
                (obj_id, ts, ts, parent[0]),
            )

    def set_access(self, db: sqlite3.Connection, obj_id: int, user_id: int, name: str) -> None:
        ts = now_ts()
        if name == "null":
            db.execute("DELETE FROM access WHERE obj_id=? AND user_id=?", (obj_id, user_id))
            return
        db.execute(
            "INSERT INTO access VALUES(?,?,?,?,?,?) ON CONFLICT(obj_id, user_id) DO UPDATE SET "
            "access_type=excluded.access_type, access_name=excluded.access_name, modify_ts=excluded.modify_ts",
            (obj_id, user_id, ACCESS_CODES[name], name, ts, ts),
        )

    def insert_coll(self, path: str, owner: str) -> int:
        ts = now_ts()
        parent = path.rpartition("/")[0] or "/"
        if path == "/":
            parent = "/"
        with self.tx() as db:
            coll_id = self.next_id()
            db.execute(
                "INSERT INTO colls VALUES(?,?,?,?,?,0,'','',?,?)",
                (coll_id, path, parent, owner, self.zone, ts, ts),
            )
            self._inherit_acls(db, parent, coll_id, ts)
            user = self.user(owner)
            if user:
                self.set_access(db, coll_id, user[0], "own")
        return coll_id

    def insert_data(self, path: str, coll_id: int, owner: str, phys: str, size: int, status: int,
                    checksum: str = "", data_type: str = "generic") -> int:  # fmt: skip
        ts = now_ts()
        parent, _, name = path.rpartition("/")
        with self.tx() as db:
            data_id = self.next_id()
            resc_id = db.execute("SELECT resc_id FROM resources WHERE resc_name=?", (self.resource,)).fetchone()
            db.execute(
                "INSERT INTO data(data_id, coll_id, data_name, repl_num, version, data_type, data_size, "
                "resc_name, data_path, owner_name, owner_zone, repl_status, data_status, checksum, expiry, "
                "map_id, comments, create_ts, modify_ts, resc_hier, resc_id, access_ts) "
                "VALUES(?,?,?,0,'',?,?,?,?,?,?,?,'',?,'00000000000',0,'',?,?,?,?,?)",
                (data_id, coll_id, name, data_type, size, self.resource, phys, owner, self.zone, status,
                 checksum, ts, ts, self.resource, resc_id[0] if resc_id else 0, ts),
            )  # fmt: skip
            self._inherit_acls(db, parent or "/", data_id, ts)
            user = self.user(owner)
            if user:
                self.set_access(db, data_id, user[0], "own")
        return data_id

    def update_data(self, data_id: int, **fields: Any) -> None:
        if not fields:
            return
        cols = ", ".join(f"{k}=?" for k in fields)
        with self.tx() as db:
            db.execute(f"UPDATE data SET {cols} WHERE data_id=?", (*fields.values(), data_id))

    def delete_data(self, data_id: int) -> None:
        with self.tx() as db:
            db.execute("DELETE FROM data WHERE data_id=?", (data_id,))
            db.execute("DELETE FROM metamap WHERE obj_id=? AND obj_type='d'", (data_id,))
            db.execute("DELETE FROM access WHERE obj_id=?", (data_id,))

    def subtree_colls(self, path: str) -> list[tuple[int, str]]:
        prefix = path.rstrip("/") + "/"
        return self.q(
            "SELECT coll_id, coll_name FROM colls WHERE coll_name=? OR substr(coll_name, 1, ?)=?",
            (path, len(prefix), prefix),
        )

    # --- GenQuery ----------------------------------------------------------------------------
    def genquery(self, selects: list[tuple[int, int]], conds: list[tuple[int, str]], options: int) -> tuple[
        list[int], list[list[str]]
    ]:  # fmt: skip
        """Run a GenQuery; returns (column ids, rows of strings)."""
        aliases: set[str] = set()
        for col, _ in [*selects, *conds]:
            if col not in COLUMNS:
                raise IrodsError(E.CAT_SQL_ERR, f"column {col} is not supported by the test server")
            aliases.add(COLUMNS[col][0])
        present: set[str] = set()
        from_parts: list[str] = []
        for alias in _TABLE_ORDER:
            if alias not in _expand(aliases):
                continue
            cond = _join_condition(alias, present)
            table = f"{_TABLE_NAME[alias]} {alias}"
            if not from_parts:
                from_parts.append(table)
            elif cond:
                from_parts.append(f"JOIN {table} ON {cond}")
            else:
                from_parts.append(f"CROSS JOIN {table}")
            present.add(alias)

        select_sql: list[str] = []
        group: list[str] = []
        order: list[str] = []
        aggregate = False
        for pos, (col, flag) in enumerate(selects, start=1):
            expr = COLUMNS[col][1]
            fn = {2: "MIN", 3: "MAX", 4: "SUM", 5: "AVG", 6: "COUNT"}.get(flag & 0xFF)
            if fn:
                aggregate = True
                select_sql.append(f"{fn}({expr})")
            else:
                select_sql.append(expr)
                group.append(str(pos))
                if flag & 0x800:
                    order.append(f"{pos} DESC")
                elif flag & 0x400:
                    order.append(f"{pos}")
        where: list[str] = []
        params: list[Any] = []
        for col, expr in conds:
            sql_col = COLUMNS[col][1]
            if options & 0x200:
                sql_col = f"upper({sql_col})"
            frag, vals = parse_condition(expr, sql_col)
            where.append(frag)
            params.extend(vals)
        distinct = "" if options & 0x40 or aggregate else "DISTINCT "
        sql = f"SELECT {distinct}{', '.join(select_sql)} FROM {' '.join(from_parts)}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        if aggregate and group:
            sql += " GROUP BY " + ", ".join(group)
        if not order:
            order = group
        if order:
            sql += " ORDER BY " + ", ".join(order)
        rows = self.q(sql, params)
        out = [["" if v is None else str(v) for v in row] for row in rows]
        return [c for c, _ in selects], out
