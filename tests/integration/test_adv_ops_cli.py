"""Session 4 probes, operations through the commands an operator types, beside a running daemon (a
subprocess), against the real iRODS:

- `retry` on failed files (a bad sidecar) once the cause is fixed: each file ingested once, with its AVUs;
- `status --json` while a burst is ingested: no count negative, the numbers consistent at every look;
- `scan` beside a running daemon: every file queued once (nothing twice in the queue), ingested once.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_harness import wait_for
from tests.integration.test_adv_ops import Proc, pipe, write_files
from tests.integration.test_reliability_daemon import jobs_files

ROOT = Path(__file__).resolve().parents[2]


def cli(cfg: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "irods_ingestd", "--log-target", "stderr", "-c", str(cfg), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)


def old(path: Path, text: str) -> None:
    """Write a file whose mtime is 10 s ago (a sidecar changed in the last 3 s is taken as being written)."""
    path.write_text(text)
    t = time.time() - 10
    os.utime(path, (t, t))


def avus_of(p: Any, logical: str) -> dict[str, str]:
    s = p.irods.session()
    try:
        return {m.name: m.value for m in s.data_objects.get(logical).metadata.items()}
    finally:
        s.cleanup()


def test_retry_after_the_cause_is_fixed_ingests_each_failed_file_once(request, tmp_path, redis_server, redis_conn,
                                                                       irods):
    p = pipe(request, tmp_path, redis_server.url, irods, sidecar="{name}.metadata.json")
    assert p.root is not None
    rels = [f"r/f{i}.dat" for i in range(4)]
    write_files(p.root, rels)
    for rel in rels:
        old(p.root / f"{rel}.metadata.json", "{not json")
    d = Proc(p.config_path, tmp_path / "d.log", "run")
    try:
        assert wait_for(lambda: p.ledger.stats("z")["queued"] == 4, timeout=20), p.ledger.stats("z")
        p.work()
        assert wait_for(lambda: p.ledger.stats("z")["failed"] == 4, timeout=20), p.ledger.stats("z")
        st = json.loads(cli(p.config_path, "status", "--json").stdout)
        failed = st["zones"]["z"]["failed_files"]
        assert sorted(f["path"] for f in failed) == sorted(str(p.root / r) for r in rels) or \
            sorted(f["path"] for f in failed) == sorted(rels), failed
        assert all("metadata.json" in f["reason"] for f in failed), failed
        assert p.objects() == {}
        r = cli(p.config_path, "retry")  # before the fix: they fail again, nothing written
        assert r.returncode == 0 and "4 failed files queued again" in r.stdout, r.stdout + r.stderr
        assert wait_for(lambda: p.ledger.stats("z")["queued"] == 4, timeout=20), p.ledger.stats("z")
        p.work()
        assert wait_for(lambda: p.ledger.stats("z")["failed"] == 4, timeout=20), p.ledger.stats("z")
        assert p.objects() == {}
        for i, rel in enumerate(rels):
            old(p.root / f"{rel}.metadata.json", json.dumps({"sample": f"s{i}"}))
        r = cli(p.config_path, "retry")
        assert r.returncode == 0 and "handed to the daemon on host" in r.stdout, r.stdout + r.stderr
        assert wait_for(lambda: p.ledger.stats("z")["queued"] == 4, timeout=20), p.ledger.stats("z")
        p.work()
        assert wait_for(lambda: p.ledger.stats("z")["done"] == 4, timeout=20), p.ledger.stats("z")
    finally:
        assert d.stop() == 0
    assert sorted(p.objects()) == sorted(f"{p.collection}/{rel}" for rel in rels)
    for i, rel in enumerate(rels):
        assert avus_of(p, f"{p.collection}/{rel}").get("sample") == f"s{i}"
    s = p.ledger.stats("z")
    assert (s["queued"], s["done"], s["failed"]) == (0, 4, 0)
    assert json.loads(cli(p.config_path, "status", "--json").stdout)["zones"]["z"]["failed_files"] == []


def _consistent(st: dict[str, Any], total: int) -> list[str]:
    bad = []
    z = st["zones"]["z"]
    for k in ("settling", "queued", "ingested", "failed", "bytes"):
        if not isinstance(z.get(k), int) or z[k] < 0:
            bad.append(f"zone {k} = {z.get(k)!r}")
    for k, v in st["queue"].items():
        if k.startswith("jobs_") and (not isinstance(v, int) or v < 0):
            bad.append(f"queue {k} = {v!r}")
    if z["queued"] + z["ingested"] + z["failed"] > total:
        bad.append(f"queued {z['queued']} + ingested {z['ingested']} + failed {z['failed']} > {total}")
    if z["settling"] + z["queued"] + z["ingested"] > total + 5:  # a file may be seen settling again once
        bad.append(f"settling {z['settling']} + queued + ingested > {total}")
    return bad


def test_status_json_during_a_burst_is_consistent(request, tmp_path, redis_server, redis_conn, irods):
    p = pipe(request, tmp_path, redis_server.url, irods, settle="0.3s")
    assert p.root is not None
    total = 150
    d = Proc(p.config_path, tmp_path / "d.log", "run")
    w = Proc(p.config_path, tmp_path / "w.log", "worker")
    looks: list[dict[str, Any]] = []
    try:
        assert wait_for(lambda: "running with 1 zones" in d.text(), timeout=15), d.text()
        write_files(p.root, [f"b{i // 25}/f{i:03d}.dat" for i in range(total)])
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            r = cli(p.config_path, "status", "--json")
            assert r.returncode in (0, 1), r.stderr
            st = json.loads(r.stdout)
            looks.append(st)
            assert _consistent(st, total) == [], (st, d.text()[-2000:])
            for rec in st["daemons"]:
                assert rec["ready_waiting"] >= 0 and rec["sent_since_start"] >= 0, rec
                assert all(z["settling"] >= 0 for z in rec["zones"].values()), rec
            if len(looks) % 3 == 1:
                human = cli(p.config_path, "status")
                assert human.returncode in (0, 1) and not re.search(r"(?<![\w.:/])-\d", human.stdout), human.stdout
            if st["zones"]["z"]["ingested"] == total:
                break
        else:
            raise AssertionError(f"not all ingested: {looks[-1]}")
    finally:
        assert w.stop() is not None
        assert d.stop() == 0
    done = [st["zones"]["z"]["ingested"] for st in looks]
    assert done == sorted(done), done  # never goes back
    assert len(looks) >= 2
    assert len(p.objects()) == total


def test_scan_beside_a_running_daemon_queues_nothing_twice(request, tmp_path, redis_server, redis_conn, irods):
    p = pipe(request, tmp_path, redis_server.url, irods, settle="0.3s")
    assert p.root is not None
    rels = [f"s{i // 20}/f{i:03d}.dat" for i in range(100)]
    d = Proc(p.config_path, tmp_path / "d.log", "run")
    try:
        assert wait_for(lambda: "running with 1 zones" in d.text(), timeout=15), d.text()
        write_files(p.root, rels)
        scans = [Proc(p.config_path, tmp_path / f"scan{i}.log", "scan") for i in range(2)]
        for s in scans:
            assert wait_for(lambda s=s: s.p.poll() is not None, timeout=60), s.text()
            assert s.stop() == 0, s.text()
        assert wait_for(lambda: p.ledger.stats("z")["queued"] == 100, timeout=20), p.ledger.stats("z")
        time.sleep(1.5)  # a rescan of the daemon's in between
        files = jobs_files(redis_conn)
        assert len(files) == len(set(files)) == 100, sorted(files)
        p.work()
        assert wait_for(lambda: p.ledger.stats("z")["done"] == 100, timeout=30), p.ledger.stats("z")
    finally:
        assert d.stop() == 0
    assert sorted(p.objects()) == sorted(f"{p.collection}/{rel}" for rel in rels)
    s = p.ledger.stats("z")
    assert (s["queued"], s["done"], s["failed"]) == (0, 100, 0)


def test_scan_of_another_config_overlapping_a_running_daemons_zone_refuses(request, tmp_path, redis_server,
                                                                             redis_conn, irods):
    """scan takes no zone, so the ownership keys do not stop it: a config naming the running daemon's
    landing directory under another zone name would queue every file a second time, into its collection."""
    uniq = tmp_path.name[-14:]
    a = pipe(request, tmp_path / f"{uniq}-a", redis_server.url, irods, name="a")
    assert a.root is not None
    b = pipe(request, tmp_path / f"{uniq}-b", redis_server.url, irods, name="b", path=str(a.root))
    write_files(a.root, ["x.dat", "sub/y.dat"])
    d = Proc(a.config_path, tmp_path / "d.log", "run")
    try:
        assert wait_for(lambda: a.ledger.stats("a")["queued"] == 2, timeout=20), a.ledger.stats("a")
        r = cli(b.config_path, "scan")
        assert r.returncode == 2, r.stdout + r.stderr
        assert "zone 'b' and zone 'a'" in r.stderr and "their paths overlap" in r.stderr, r.stderr
        assert a.ledger.stats("b")["queued"] == 0
        a.work()
    finally:
        assert d.stop() == 0
    assert b.objects() == {}
    assert sorted(a.objects()) == [f"{a.collection}/sub/y.dat", f"{a.collection}/x.dat"]


def test_a_collection_in_an_unknown_irods_zone(request, tmp_path, redis_server, redis_conn, irods):
    """`/otherZone/...` is a valid path (a federated zone may hold it), so only the check against the server
    can refuse it: check-config says so, naming the zone; a daemon run anyway lists each file failed with
    the reason, and keeps running."""
    coll = f"/noSuchZone{tmp_path.name[-8:]}/home/rods/x"
    p = pipe(request, tmp_path, redis_server.url, irods, collection=coll)
    assert p.root is not None
    r = cli(p.config_path, "check-config")
    assert r.returncode == 1 and f"zone 'z': no part of {coll} exists in iRODS" in r.stderr, r.stdout + r.stderr
    write_files(p.root, ["a.dat", "b.dat"])
    d = Proc(p.config_path, tmp_path / "d.log", "run")
    try:
        assert wait_for(lambda: p.ledger.stats("z")["queued"] == 2, timeout=20), p.ledger.stats("z")
        p.work()
        assert wait_for(lambda: p.ledger.stats("z")["failed"] == 2, timeout=30), p.ledger.stats("z")
        st = json.loads(cli(p.config_path, "status", "--json").stdout)
        reasons = [f["reason"] for f in st["zones"]["z"]["failed_files"]]
        assert len(reasons) == 2 and all(reasons), reasons
        assert d.p.poll() is None
    finally:
        assert d.stop() == 0


def test_check_config_with_a_wrong_password_names_the_account(request, tmp_path, redis_server, redis_conn, irods):
    """A wrong iRODS password: check-config says the login of which account at which server was refused
    and where the password comes from, never the password, and exits 1."""
    p = pipe(request, tmp_path, redis_server.url, irods)
    (tmp_path / "irods-password").write_text("not-the-password")
    r = cli(p.config_path, "check-config")
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert f"refused the login of {irods.user}#{irods.zone}" in out, out
    assert "password_file" in out and "not-the-password" not in out, out
    assert ": None" not in out, out


# a probe of the product on the real server, not of the stand-in's likeness: not run again in the second pass
pytestmark = pytest.mark.realonly
