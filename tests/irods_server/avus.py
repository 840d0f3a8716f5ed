"""AVUs as the iRODS catalog keeps them: one row per distinct (attribute, value, units), shared by every object
that carries it (R_META_MAIN), and a map from objects to rows (R_OBJT_METAMAP).

The sharing shows through python-irodsclient, so the test server models it as a real iRODS 5.0.2 behaves:
- ``add`` finds the row with that content, or makes one, and maps it; an object that already maps a row
  with that content gets CATALOG_ALREADY_HAS_ITEM_BY_THAT_NAME;
- an atomic ``add`` only looks at the row it finds: when the object carries the same content through
  another row, it now carries it twice (two AVU ids);
- ``set`` on an object whose one AVU of that name is a row no other object maps changes that row in place
  (the same id); otherwise it drops the object's AVUs of that name and maps the row for the new content;
- ``mod`` maps the row for the new content instead of the old one; ``rm`` drops mappings, not rows.
A real catalog finds "the row with that content" in its table's physical order, where a row changed in
place moves to the end: the ``seq`` column stands for that order.
"""

from __future__ import annotations

import sqlite3

from .catalog import Catalog, now_ts
from .errors import E, IrodsError

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    meta_id INTEGER PRIMARY KEY, name TEXT, value TEXT, units TEXT DEFAULT '', create_ts TEXT, modify_ts TEXT,
    seq INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS meta_content ON meta(name, value, units);
CREATE TABLE IF NOT EXISTS metamap (
    obj_id INTEGER NOT NULL, obj_type TEXT NOT NULL, meta_id INTEGER NOT NULL, create_ts TEXT,
    PRIMARY KEY(obj_id, obj_type, meta_id));
CREATE INDEX IF NOT EXISTS metamap_meta ON metamap(meta_id);
"""
VIEW = """
CREATE VIEW avu AS SELECT M.meta_id, MM.obj_id, MM.obj_type, M.name, M.value, M.units, M.create_ts, M.modify_ts
    FROM metamap MM JOIN meta M ON M.meta_id = MM.meta_id;
"""

Obj = tuple[int, str]  # (object id, "d" | "C" | "R" | "u")


def install(db: sqlite3.Connection) -> None:
    """Create the tables and the ``avu`` view GenQuery reads (moving the rows of an older catalog's table)."""
    db.executescript(SCHEMA)
    kind = db.execute("SELECT type FROM sqlite_master WHERE name='avu'").fetchone()
    if kind and kind[0] == "table":
        db.executescript("""
            INSERT INTO meta(meta_id, name, value, units, create_ts, modify_ts, seq)
                SELECT meta_id, name, value, units, create_ts, modify_ts, meta_id FROM avu;
            INSERT INTO metamap SELECT obj_id, obj_type, meta_id, create_ts FROM avu;
            DROP TABLE avu;""")
        kind = None
    if not kind:
        db.executescript(VIEW)


class Avus:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    # --- rows and mappings ---------------------------------------------------------------------
    def _find(self, db: sqlite3.Connection, name: str, value: str, units: str) -> int | None:
        row = db.execute("SELECT meta_id FROM meta WHERE name=? AND value=? AND units=? ORDER BY seq, meta_id "
                         "LIMIT 1", (name, value, units)).fetchone()  # fmt: skip
        return row[0] if row else None

    def _next_seq(self, db: sqlite3.Connection) -> int:
        return int(db.execute("SELECT coalesce(max(seq), 0) + 1 FROM meta").fetchone()[0])

    def _row_for(self, db: sqlite3.Connection, name: str, value: str, units: str) -> int:
        if not name or not value:
            raise IrodsError(E.CAT_INVALID_ARGUMENT, "attribute name and value are required")
        found = self._find(db, name, value, units)
        if found is not None:
            return found
        meta_id, ts = self.catalog.next_id(), now_ts()
        db.execute("INSERT INTO meta VALUES(?,?,?,?,?,?,?)",
                   (meta_id, name, value, units, ts, ts, self._next_seq(db)))  # fmt: skip
        return meta_id

    def _map(self, db: sqlite3.Connection, obj: Obj, meta_id: int) -> None:
        db.execute("INSERT OR IGNORE INTO metamap VALUES(?,?,?,?)", (*obj, meta_id, now_ts()))

    def _mapped(self, db: sqlite3.Connection, obj: Obj, name: str, value: str | None = None,
                units: str | None = None) -> list[int]:  # fmt: skip
        sql = "SELECT meta_id FROM avu WHERE obj_id=? AND obj_type=? AND name=?"
        params: list[object] = [*obj, name]
        for col, val in (("value", value), ("units", units)):
            if val is not None:
                sql += f" AND {col}=?"
                params.append(val)
        return [r[0] for r in db.execute(sql + " ORDER BY meta_id", params)]

    def _unmap(self, db: sqlite3.Connection, obj: Obj, ids: list[int]) -> int:
        return sum(db.execute("DELETE FROM metamap WHERE obj_id=? AND obj_type=? AND meta_id=?",
                              (*obj, i)).rowcount for i in ids)  # fmt: skip

    # --- operations ----------------------------------------------------------------------------
    def add(self, obj: Obj, name: str, value: str, units: str, atomic: bool = False) -> None:
        with self.catalog.tx() as db:
            if not atomic and self._mapped(db, obj, name, value, units):
                raise IrodsError(E.CATALOG_ALREADY_HAS_ITEM_BY_THAT_NAME, f"AVU {name}={value} exists")
            self._map(db, obj, self._row_for(db, name, value, units))

    def remove(self, obj: Obj, name: str, value: str, units: str) -> int:
        with self.catalog.tx() as db:
            return self._unmap(db, obj, self._mapped(db, obj, name, value, units))

    def remove_id(self, obj: Obj, meta_id: str) -> int:
        with self.catalog.tx() as db:
            return self._unmap(db, obj, [int(meta_id)] if meta_id.isdigit() else [])

    def set(self, obj: Obj, name: str, value: str, units: str) -> None:
        with self.catalog.tx() as db:
            ids = self._mapped(db, obj, name)
            if len(ids) == 1 and db.execute("SELECT count(*) FROM metamap WHERE meta_id=?", ids).fetchone()[0] == 1:
                if not value:
                    raise IrodsError(E.CAT_INVALID_ARGUMENT, "attribute value is required")
                db.execute("UPDATE meta SET value=?, units=?, modify_ts=?, seq=? WHERE meta_id=?",
                           (value, units, now_ts(), self._next_seq(db), ids[0]))  # fmt: skip
                return
            self._unmap(db, obj, ids)
            self._map(db, obj, self._row_for(db, name, value, units))

    def modify(self, obj: Obj, name: str, value: str, units: str | None, changes: list[str]) -> None:
        with self.catalog.tx() as db:
            ids = self._mapped(db, obj, name, value, units)
            if not ids:
                raise IrodsError(E.CAT_SUCCESS_BUT_WITH_NO_INFO, "no such AVU to modify")
            old = db.execute("SELECT name, value, units FROM meta WHERE meta_id=?", ids[:1]).fetchone()
            new = {"n": old[0], "v": old[1], "u": old[2]}
            for item in changes:
                if item and item[:2] in ("n:", "v:", "u:"):
                    new[item[0]] = item[2:]
            self._unmap(db, obj, ids[:1])
            self._map(db, obj, self._row_for(db, new["n"], new["v"], new["u"]))

    def copy(self, src: Obj, dst: Obj) -> None:
        with self.catalog.tx() as db:
            for meta_id, name, value, units in db.execute(
                    "SELECT meta_id, name, value, units FROM avu WHERE obj_id=? AND obj_type=?", src).fetchall():
                if not self._mapped(db, dst, name, value, units):
                    self._map(db, dst, meta_id)
