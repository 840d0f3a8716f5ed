"""Session 4 probes, configuration and operations: daemons that must not share zones, through the real
pipeline (real Redis, the daemon as a subprocess, real RQ workers, the real iRODS).

- two daemons with different configs whose zones overlap (one landing directory, one inside the other, one
  collection, one inside the other): the second refuses, naming the first's zone, host and pid and what
  overlaps; every file reaches iRODS once, in the first daemon's collection only; a reload moving a zone
  into another daemon's is refused; check-config says the same (more in test_adv_ops_claims.py);
- two daemons started at once on one config: one runs, the other refuses naming it;
- a storm of SIGHUPs, and one with the config file gone, during a burst;
- SIGTERM during a burst, with the backlog full, during a large first walk: the journal says what was still
  settling or ready; a restart finishes it.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_harness import wait_for
from tests.pipeline_harness import Pipeline

ROOT = Path(__file__).resolve().parents[2]


class Proc:
    """`irods-ingestd ...` as a child process, its stderr in a file."""

    def __init__(self, cfg: Path, log: Path, *args: str) -> None:
        self.log = log
        self._f = open(log, "w")
        self.p = subprocess.Popen([sys.executable, "-m", "irods_ingestd", "--log-target", "stderr", "-c", str(cfg),
                                   *args], stderr=self._f, stdout=subprocess.DEVNULL, cwd=ROOT)

    def text(self) -> str:
        return self.log.read_text()

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        if self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(15)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(5)
        self._f.close()
        return self.p.returncode


def pipe(request: pytest.FixtureRequest, tmp: Path, redis_url: str, irods: Any, **zone: Any) -> Pipeline:
    """A Pipeline in its own directory (its own config.toml), collection empty at start, removed at the end."""
    tmp.mkdir(parents=True, exist_ok=True)
    name = zone.pop("name", "z")
    p = Pipeline(tmp, redis_url, irods, zone=zone, name=name)
    p.cleanup()
    request.addfinalizer(p.cleanup)
    return p


def write_files(root: Path, rels: list[str]) -> None:
    for i, rel in enumerate(rels):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(os.urandom(64 + i))


# -- two daemons, different configs, overlapping zones --------------------------------------------------
OVERLAPS = {
    "same landing directory": (lambda a: {"path": str(a.root)}, "their paths overlap"),
    "landing directory inside the other's": (lambda a: {"path": str(a.root / "sub")}, "their paths overlap"),
    "landing directory holding the other's": (lambda a: {"path": str(a.root.parent)}, "their paths overlap"),
    "same collection": (lambda a: {"collection": a.collection}, "their collections overlap"),
    "collection inside the other's": (lambda a: {"collection": a.collection + "/sub"}, "their collections overlap"),
}


@pytest.mark.parametrize("case", list(OVERLAPS))
def test_a_second_daemon_whose_zone_overlaps_anothers_refuses(request, tmp_path, redis_server, redis_conn, irods,
                                                             case):
    uniq = tmp_path.name[-14:]
    a = pipe(request, tmp_path / f"{uniq}-a", redis_server.url, irods, name="a")
    assert a.root is not None
    (a.root / "sub").mkdir()
    change, expected = OVERLAPS[case]
    b = pipe(request, tmp_path / f"{uniq}-b", redis_server.url, irods, name="b", **change(a))
    first = Proc(a.config_path, tmp_path / "first.log", "run")
    second: Proc | None = None
    try:
        assert wait_for(lambda: "running with 1 zones" in first.text(), timeout=15), first.text()
        check = subprocess.run([sys.executable, "-m", "irods_ingestd", "-c", str(b.config_path), "check-config"],
                               capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert check.returncode == 1 and "zone 'b' and zone 'a'" in check.stderr and expected in check.stderr, \
            check.stdout + check.stderr
        second = Proc(b.config_path, tmp_path / "second.log", "run")
        assert wait_for(lambda: second.p.poll() is not None, timeout=15), \
            f"a second daemon runs a zone overlapping the first's ({case})"
        assert second.p.returncode == 1, second.text()
        err = second.text()
        assert "zone 'b'" in err and "zone 'a'" in err and expected in err, err
        assert f"host {socket.gethostname()} (pid {first.p.pid}" in err, err
        rels = ["top.dat", "sub/inner.dat", "sub/deeper/x.dat"]
        write_files(a.root, rels)
        assert wait_for(lambda: a.ledger.stats("a")["queued"] == len(rels), timeout=20), a.ledger.stats("a")
        a.work()
        assert first.p.poll() is None
    finally:
        assert first.stop() == 0
        if second is not None:
            second.stop()
    assert sorted(a.objects()) == sorted(f"{a.collection}/{rel}" for rel in rels)
    if b.collection != a.collection:
        assert b.objects() == {}
    assert a.ledger.stats("b")["queued"] + a.ledger.stats("b")["done"] == 0
    sa = a.ledger.stats("a")
    assert (sa["queued"], sa["done"], sa["failed"]) == (0, len(rels), 0)


def test_a_reload_moving_a_zone_into_another_daemons_is_refused(request, tmp_path, redis_server, redis_conn, irods):
    """Daemon b runs a zone of its own; its config is edited so the zone's path is a's landing directory and
    SIGHUP: the reload is refused (naming both zones) and b keeps running its old zone."""
    uniq = tmp_path.name[-14:]
    a = pipe(request, tmp_path / f"{uniq}-a", redis_server.url, irods, name="a")
    b = pipe(request, tmp_path / f"{uniq}-b", redis_server.url, irods, name="b")
    assert a.root is not None and b.root is not None
    da = Proc(a.config_path, tmp_path / "a.log", "run")
    db = Proc(b.config_path, tmp_path / "b.log", "run")
    try:
        assert wait_for(lambda: "running with 1 zones" in da.text() and "running with 1 zones" in db.text(),
                        timeout=15), da.text() + db.text()
        b.config_path.write_text(b.config_path.read_text().replace(f'path = "{b.root}"', f'path = "{a.root}"'))
        db.p.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "reload refused" in db.text(), timeout=15), db.text()
        assert "zone 'b' and zone 'a'" in db.text() and "their paths overlap" in db.text(), db.text()
        write_files(a.root, ["in-a.dat"])
        write_files(b.root, ["in-b.dat"])
        assert wait_for(lambda: a.ledger.stats("a")["queued"] == 1 and a.ledger.stats("b")["queued"] == 1,
                        timeout=20), (a.ledger.stats("a"), a.ledger.stats("b"))
        a.work()
        assert da.p.poll() is None and db.p.poll() is None
    finally:
        assert da.stop() == 0
        assert db.stop() == 0
    assert sorted(a.objects()) == [f"{a.collection}/in-a.dat"]
    assert sorted(b.objects()) == [f"{b.collection}/in-b.dat"]


def test_sigterm_during_a_burst_says_what_was_pending_and_a_restart_finishes_it(request, tmp_path, redis_server,
                                                                                redis_conn, irods):
    p = pipe(request, tmp_path, redis_server.url, irods, settle="1s")
    assert p.root is not None
    d = Proc(p.config_path, tmp_path / "d1.log", "run")
    try:
        assert wait_for(lambda: "running with 1 zones" in d.text(), timeout=15), d.text()
        rels = [f"b{i // 10}/f{i:03d}.dat" for i in range(60)]
        write_files(p.root, rels[:30])
        assert wait_for(lambda: p.ledger.stats("z")["queued"] == 30, timeout=20)
        write_files(p.root, rels[30:])  # still settling when the daemon is told to stop
        time.sleep(0.3)
    finally:
        assert d.stop() == 0
    m = re.search(r"stopping: (\d+) files? settling and (\d+) ready", d.text())
    assert m, d.text()
    assert int(m.group(1)) + int(m.group(2)) == 30, m.group(0)
    assert p.ledger.stats("z")["queued"] == 30
    d2 = Proc(p.config_path, tmp_path / "d2.log", "run")
    try:
        assert wait_for(lambda: p.ledger.stats("z")["queued"] == 60, timeout=30), p.ledger.stats("z")
        p.work()
        assert wait_for(lambda: p.ledger.stats("z")["done"] == 60, timeout=30), p.ledger.stats("z")
    finally:
        assert d2.stop() == 0
    assert sorted(p.objects()) == sorted(f"{p.collection}/{rel}" for rel in rels)
    s = p.ledger.stats("z")
    assert (s["queued"], s["done"], s["failed"]) == (0, 60, 0)


def test_two_daemons_started_at_once_on_one_config_one_runs(request, tmp_path, redis_server, redis_conn, irods):
    p = pipe(request, tmp_path, redis_server.url, irods)
    assert p.root is not None
    rels = [f"d{i % 3}/f{i:02d}.dat" for i in range(30)]
    write_files(p.root, rels)  # both find them at their first walk
    procs = [Proc(p.config_path, tmp_path / f"d{i}.log", "run") for i in range(2)]
    try:
        assert wait_for(lambda: any(x.p.poll() is not None for x in procs), timeout=20), "both daemons run"
        loser = next(x for x in procs if x.p.poll() is not None)
        winner = next(x for x in procs if x is not loser)
        assert loser.p.returncode == 1, loser.text()
        assert f"(pid {winner.p.pid}" in loser.text(), loser.text()
        assert wait_for(lambda: p.ledger.stats("z")["queued"] == 30, timeout=20), p.ledger.stats("z")
        p.work()
        assert wait_for(lambda: p.ledger.stats("z")["done"] == 30, timeout=20), p.ledger.stats("z")
        assert winner.p.poll() is None
    finally:
        for x in procs:
            x.stop()
    assert sorted(p.objects()) == sorted(f"{p.collection}/{rel}" for rel in rels)


def test_a_storm_of_sighups_and_a_vanished_config_during_a_burst(request, tmp_path, redis_server, redis_conn, irods):
    """SIGHUP twenty times while files arrive, then once with the config file gone: the daemon keeps its
    configuration (says why) and every file goes in once."""
    p = pipe(request, tmp_path, redis_server.url, irods)
    assert p.root is not None
    d = Proc(p.config_path, tmp_path / "d.log", "run")
    rels = [f"s{i % 5}/f{i:03d}.dat" for i in range(100)]
    try:
        assert wait_for(lambda: "running with 1 zones" in d.text(), timeout=15), d.text()
        for i in range(20):
            write_files(p.root, rels[i * 5:(i + 1) * 5])
            d.p.send_signal(signal.SIGHUP)
            time.sleep(0.05)
        text = p.config_path.read_text()
        p.config_path.unlink()
        d.p.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "reload refused" in d.text(), timeout=15), d.text()
        p.config_path.write_text(text)
        p.config_path.chmod(0o600)
        assert wait_for(lambda: p.ledger.stats("z")["queued"] + p.ledger.stats("z")["done"] == 100, timeout=30), \
            p.ledger.stats("z")
        p.work()
        assert wait_for(lambda: p.ledger.stats("z")["done"] == 100, timeout=30), p.ledger.stats("z")
        assert d.p.poll() is None, d.text()
    finally:
        assert d.stop() == 0
    assert sorted(p.objects()) == sorted(f"{p.collection}/{rel}" for rel in rels)
    assert "Traceback" not in d.text(), d.text()


def test_sigterm_with_the_backlog_full_names_the_ready_files_and_a_restart_queues_them(request, tmp_path,
                                                                                      redis_server, redis_conn,
                                                                                      irods):
    p = pipe(request, tmp_path, redis_server.url, irods)
    assert p.root is not None
    p.config_path.write_text(p.config_path.read_text().replace("[queue]\n", "[queue]\nmax_backlog = 5\n"))
    rels = [f"f{i:02d}.dat" for i in range(20)]
    d = Proc(p.config_path, tmp_path / "d1.log", "run")
    try:
        assert wait_for(lambda: "running with 1 zones" in d.text(), timeout=15), d.text()
        write_files(p.root, rels)
        assert wait_for(lambda: p.ledger.stats("z")["queued"] == 5, timeout=20), p.ledger.stats("z")
        time.sleep(1.0)
    finally:
        assert d.stop() == 0
    m = re.search(r"stopping: (\d+) files? settling and (\d+) ready", d.text())
    assert m and (int(m.group(1)), int(m.group(2))) == (0, 15), d.text()
    assert "(z: 0 settling, 15 ready)" in d.text()
    d2 = Proc(p.config_path, tmp_path / "d2.log", "run")
    try:
        assert wait_for(lambda: p.ledger.stats("z")["queued"] == 5, timeout=20)
        while p.ledger.stats("z")["done"] < 20:
            p.work()
            assert wait_for(lambda: p.ledger.stats("z")["queued"] > 0 or p.ledger.stats("z")["done"] == 20,
                            timeout=20), p.ledger.stats("z")
    finally:
        assert d2.stop() == 0
    assert sorted(p.objects()) == sorted(f"{p.collection}/{rel}" for rel in rels)


def test_sigterm_during_the_first_walk_of_a_large_tree_stops_promptly(request, tmp_path, redis_server, redis_conn,
                                                                      irods):
    from tests.integration.test_reliability_daemon import jobs_files

    p = pipe(request, tmp_path, redis_server.url, irods)
    assert p.root is not None
    n = 3000
    for i in range(n):
        d = p.root / f"t{i % 30}" / f"u{i % 7}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:05d}").write_bytes(b"x")
    d1 = Proc(p.config_path, tmp_path / "d1.log", "run")
    try:
        assert wait_for(lambda: "running with 1 zones" in d1.text(), timeout=15), d1.text()
        d1.p.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        assert wait_for(lambda: d1.p.poll() is not None, timeout=10), "the daemon did not stop within 10 s"
        assert time.monotonic() - t0 < 5
    finally:
        assert d1.stop() == 0
    assert "irods-ingestd stopping: " in d1.text()
    d2 = Proc(p.config_path, tmp_path / "d2.log", "run")
    try:
        assert wait_for(lambda: p.ledger.stats("z")["queued"] == n, timeout=60), p.ledger.stats("z")
    finally:
        assert d2.stop() == 0
    files = jobs_files(redis_conn)
    assert len(files) == len(set(files)) == n


# a probe of the product on the real server, not of the stand-in's likeness: not run again in the second pass
pytestmark = pytest.mark.realonly
