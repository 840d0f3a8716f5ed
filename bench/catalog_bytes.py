"""Catalog bytes: what one ingested file costs in the iRODS catalog (PostgreSQL), rows and bytes, with the
product's default provenance (7 AVUs), and the ingest rate of that run.

    python -m bench.run --only catalog [--quick]

`irods-ingestd run` + 4 workers (register mode: no vault bytes, the same catalog rows as a put) ingest N files
(10 directories) into a fresh collection, once with the default `provenance = "object"` (7 AVUs an object)
and once with `provenance = "collection"` (none). Before and after, `pg_relation_size`, `pg_indexes_size` and the
row count of each catalog table a data object touches are read from the ICAT database (read only, through
`psql` as the `postgres` unix user: INGESTD_BENCH_PSQL overrides the command); the rows of this run's objects
are counted by joining on its collection, so that rows other clients wrote meanwhile are told apart (the
machine is shared: the table then says so). Two figures a data object:
- growth: (table + index bytes after - before) / N. Exact on a quiet catalog; on a busy one, rows other
  clients deleted leave free space that this run's rows fill, and the growth reads low;
- rows: for each table, this run's rows an object x (its mean stored tuple, `pg_column_size(row)`, 8-aligned,
  + a 4-byte line pointer, + its entries in each of the table's indexes: see tuple_bytes). AVU rows
  (r_meta_main) are counted only where no other object uses them (iRODS shares an AVU row between objects
  with the same attribute, value and unit). Page headers and free space are left out (a few %).
The CPU seconds the iRODS server, PostgreSQL, Redis and irods-ingestd's processes spent meanwhile are printed
a file (see cpu_seconds; on a shared machine other clients' requests to the same servers count too).
The run's collection is removed afterwards.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from pathlib import Path
from typing import Any

from .common import Results, Services, loadavg, make_files

TABLES = ("r_data_main", "r_meta_main", "r_objt_metamap", "r_objt_access", "r_coll_main")
PSQL = os.environ.get("INGESTD_BENCH_PSQL", "su postgres -c 'psql -d ICAT -qtAX'")


def psql(sql: str) -> list[list[str]]:
    out = subprocess.run(shlex.split(PSQL), input=sql, capture_output=True, text=True, check=True).stdout
    return [line.split("|") for line in out.splitlines() if line.strip()]


def snapshot() -> dict[str, tuple[int, int, int]]:
    """table → (heap bytes with its TOAST, index bytes, rows)."""
    sql = "".join(f"select '{t}', pg_total_relation_size('{t}') - pg_indexes_size('{t}'), pg_indexes_size('{t}'), "
                  f"(select count(*) from {t});\n" for t in TABLES)
    return {row[0]: (int(row[1]), int(row[2]), int(row[3])) for row in psql(sql)}


def own_rows(coll: str) -> dict[str, int]:
    """Rows of this run's objects (and collections) in each table."""
    like = coll.replace("'", "''") + "%"
    data = (f"select d.data_id from r_data_main d join r_coll_main c on d.coll_id = c.coll_id "
            f"where c.coll_name like '{like}'")
    sql = (f"select 'r_data_main', count(*) from ({data}) x;\n"
           f"select 'r_objt_metamap', count(*) from r_objt_metamap where object_id in ({data});\n"
           f"select 'r_meta_main', count(distinct meta_id) from r_objt_metamap where object_id in ({data});\n"
           f"select 'r_meta_main_own', count(*) from (select meta_id from r_objt_metamap group by meta_id having "
           f"bool_and(object_id in ({data}))) x;\n"
           f"select 'r_objt_access', count(*) from r_objt_access where object_id in ({data});\n"
           f"select 'r_coll_main', count(*) from r_coll_main where coll_name like '{like}';\n")
    return {row[0]: int(row[1]) for row in psql(sql)}


def _own_where(coll: str) -> dict[str, str]:
    """Each table's WHERE clause that picks this run's rows (AVU rows: those its objects use)."""
    like = coll.replace("'", "''") + "%"
    data = (f"select d.data_id from r_data_main d join r_coll_main c on d.coll_id = c.coll_id "
            f"where c.coll_name like '{like}'")
    return {"r_data_main": f"data_id in ({data})", "r_objt_metamap": f"object_id in ({data})",
            "r_meta_main": f"meta_id in (select meta_id from r_objt_metamap where object_id in ({data}))",
            "r_objt_access": f"object_id in ({data})", "r_coll_main": f"coll_name like '{like}'"}


def tuple_bytes(coll: str) -> dict[str, tuple[float, float]]:
    """table → (mean stored tuple of this run's rows: pg_column_size(row), tuple header + data;
    bytes its entries take in the table's indexes). An index entry: 8-byte header + the key's columns
    (pg_column_size of them as a row, less its 24-byte header), 8-aligned, + a 4-byte line pointer,
    at the B-tree's default leaf fill of 90%."""
    where = _own_where(coll)
    idx = psql("select c.relname, array_to_string(array(select a.attname from unnest(i.indkey) k join "
               "pg_attribute a on a.attrelid = i.indrelid and a.attnum = k), ',') from pg_index i join pg_class c "
               f"on c.oid = i.indrelid where c.relname in ({', '.join(repr(t) for t in TABLES)});\n")
    sql = "".join(f"select '{t}', avg(pg_column_size(t.*)) from {t} t where {where[t]};\n" for t in TABLES)
    sql += "".join(f"select '{t}', avg(pg_column_size(row({cols})) - 24) from {t} t where {where[t]};\n"
                   for t, cols in idx)
    tup: dict[str, float] = {}
    ix: dict[str, float] = {}
    for i, row in enumerate(psql(sql)):
        v = float(row[1] or 0)
        if i < len(TABLES):
            tup[row[0]] = v
        else:
            ix[row[0]] = ix.get(row[0], 0.0) + (-(-(8 + v) // 8) * 8 + 4) / 0.9
    return {t: (tup.get(t, 0.0), ix.get(t, 0.0)) for t in TABLES}


def cpu_seconds() -> dict[str, float]:
    """CPU seconds so far, by kind of process: each live process's own and its reaped children's (iRODS
    agents and PostgreSQL backends exit with their connection and are reaped by a parent that lives on);
    irods-ingestd's daemon and workers are this process's children (resource.getrusage once they exit).
`redis` is the bench's own redis-server (its child; other engineers' servers come and go and are left out)."""
    import resource

    tick = os.sysconf("SC_CLK_TCK")
    out = {"irods": 0.0, "postgres": 0.0, "redis": 0.0}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        rest = stat[stat.rindex(")") + 2:].split()
        kind = ("irods" if comm.startswith("irods") else "postgres" if comm.startswith("postgres")
                else "redis" if comm.startswith("redis-server") and int(rest[1]) == os.getpid() else None)
        if kind:
            f13 = rest[11:15]  # utime stime cutime cstime
            out[kind] += sum(int(x) for x in f13) / tick
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    out["ingestd"] = ru.ru_utime + ru.ru_stime
    return out


def measure(svc: Services, work: Path, n: int, provenance: str = "object", ndirs: int = 10) -> dict[str, Any]:
    from .throughput import run_ingestd

    src = work / "catalog-data"
    made, _ = make_files(src, ndirs, n // ndirs, 16)
    time.sleep(2.5)
    svc.flush_redis()
    coll = f"{svc.home}/bench-catalog-{os.getpid()}-{int(time.time())}"
    before = snapshot()
    cpu0, t0 = cpu_seconds(), time.monotonic()
    out = run_ingestd(svc, src, coll, mode="register", n=made, work=work, label="catalog", provenance=provenance)
    cpu1, wall = cpu_seconds(), time.monotonic() - t0
    after = snapshot()
    own = own_rows(coll) if out.seconds is not None else {}
    tup = tuple_bytes(coll) if out.seconds is not None else {}
    try:
        with svc.session() as s:
            if s.collections.exists(coll):
                s.collections.remove(coll, recurse=True, force=True)
    except Exception as e:  # noqa: BLE001 - a leftover collection is reported, the figures stand
        print(f"  (could not remove {coll}: {e})", flush=True)
    subprocess.run(["rm", "-rf", str(src), *map(str, work.glob("zone-catalog-*")),
                    *map(str, work.glob("tree-catalog-*"))], check=False)
    return {"n": made, "seconds": out.seconds, "why": out.why, "before": before, "after": after, "own": own,
            "tuple": tup, "cpu": {k: cpu1[k] - cpu0[k] for k in cpu0}, "wall": wall}


def row_cost(m: dict[str, Any], t: str) -> float:
    """Bytes a row of table t costs with its index entries: its tuple (8-aligned) and line pointer at the
    heap's fill of 100%, + its entries in the table's indexes (tuple_bytes)."""
    tb, ib = m["tuple"].get(t, (0.0, 0.0))
    return (-(-tb // 8) * 8 + 4 + ib) if tb else 0.0


def per_object(m: dict[str, Any]) -> tuple[float, float]:
    """(growth of tables + indexes / N, rows a object x row cost) in bytes."""
    n = m["n"]
    growth = sum(m["after"][t][0] + m["after"][t][1] - m["before"][t][0] - m["before"][t][1] for t in TABLES) / n
    own = dict(m["own"], r_meta_main=m["own"].get("r_meta_main_own", 0))
    rows = sum(own.get(t, 0) / n * row_cost(m, t) for t in TABLES)
    return growth, rows


def table(m: dict[str, Any]) -> str:
    n = m["n"]
    head = (f"{'table':<15} {'rows +':>8} {'own rows':>9} {'rows/object':>12} {'heap +bytes':>12} "
            f"{'index +bytes':>13} {'growth B/obj':>13} {'tuple B':>8} {'index B':>8} {'rows B/obj':>11}")
    out = [head, "-" * len(head)]
    for t in TABLES:
        b, a = m["before"][t], m["after"][t]
        dh, di, dr = a[0] - b[0], a[1] - b[1], a[2] - b[2]
        own = m["own"].get("r_meta_main_own" if t == "r_meta_main" else t, 0)
        out.append(f"{t:<15} {dr:>8,} {own:>9,} {own / n:>12.2f} {dh:>12,} {di:>13,} {(dh + di) / n:>13.1f} "
                   f"{m['tuple'].get(t, (0, 0))[0]:>8.1f} {m['tuple'].get(t, (0, 0))[1]:>8.1f} "
                   f"{own / n * row_cost(m, t):>11.1f}")
    growth, rows = per_object(m)
    out.append(f"{'all':<15} {'':>8} {'':>9} {'':>12} {'':>12} {'':>13} {growth:>13.1f} {'':>8} {'':>8} "
               f"{rows:>11.1f}")
    if "r_meta_main_own" in m["own"]:
        out.append(f"(r_meta_main: the run's objects use {m['own']['r_meta_main']:,} AVU rows, "
                   f"{m['own']['r_meta_main_own']:,} of them used by no other object)")
    return "\n".join(out)


def run(svc: Services, work: Path, res: Results, quick: bool) -> None:
    n = 1000 if quick else 10_000
    for prov in ("object", "collection"):
        print(f"  {n} files, register mode, 4 workers, provenance = {prov}; load {loadavg()}", flush=True)
        m = measure(svc, work, n, prov)
        if m["seconds"] is None:
            res.fail("catalog", f"catalog bytes of {n} objects, provenance = {prov}", m["why"])
            continue
        print(table(m), flush=True)
        report(res, m, prov)


def report(res: Results, m: dict[str, Any], prov: str) -> None:
    growth, rows = per_object(m)
    what = "7 AVUs" if prov == "object" else "no AVU (provenance = collection)"
    res.add("catalog", f"PostgreSQL bytes per data object with {what} ({m['n']:,} objects, tables + indexes)",
            f"{rows:.0f} B from its rows; {growth:.0f} B table growth / N")
    res.add("catalog", f"ingest rate of that run (register, 4 workers, {m['n']:,} files, provenance = {prov})",
            f"{m['n'] / m['seconds']:.1f} files/s ({m['seconds']:.1f} s)")
    cpu = m["cpu"]
    res.add("catalog", f"CPU ms a file by kind of process, provenance = {prov} (whole machine: others' load too)",
            ", ".join(f"{k} {v / m['n'] * 1000:.1f}" for k, v in cpu.items())
            + f"; all {sum(cpu.values()) / m['n'] * 1000:.1f} in {m['wall']:.0f} s wall (start-up included)")
