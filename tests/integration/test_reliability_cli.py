"""Issue 11, the commands: `scan` is not the daemon and says when the backlog is full; `retry` tells the
truth about when files are queued; `status` names each counter once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.daemon_harness import DaemonThread, make_config, wait_for

ROOT = Path(__file__).resolve().parents[2]


def write_config(tmp: Path, redis_url: str, max_backlog: int = 200_000) -> Path:
    env = tmp / "env.json"
    env.write_text("{}")
    (tmp / "one").mkdir(exist_ok=True)
    cfg = tmp / "config.toml"
    cfg.write_text(f'[redis]\nurl = "{redis_url}"\n[irods]\nenvironment_file = "{env}"\n'
                   f'[queue]\nname = "ingest-test"\nmax_backlog = {max_backlog}\n'
                   f'[[zone]]\nname = "one"\npath = "{tmp / "one"}"\ncollection = "/tempZone/home/rods/one"\n'
                   f'settle = "0.3s"\n')
    return cfg


def cli(cfg: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "irods_ingestd", "--log-target", "stderr", "-c", str(cfg), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=timeout)


def old_files(root: Path, n: int) -> None:
    old = time.time() - 600
    for i in range(n):
        p = root / f"f{i:03d}"
        p.write_text(str(i))
        os.utime(p, (old, old))


def test_scan_is_not_the_daemon(tmp_path, redis_server, redis_conn):
    cfg = write_config(tmp_path, redis_server.url)
    old_files(tmp_path / "one", 3)
    r = cli(cfg, "scan")
    assert r.returncode == 0, r.stderr
    assert "scan: sent 3 files to the queue" in r.stdout
    assert redis_conn.keys("ingestd:daemon:*") == []  # no daemon status record
    st = cli(cfg, "status")
    assert "daemon: not running" in st.stdout, st.stdout


def test_scan_says_when_the_backlog_is_full_and_exits(tmp_path, redis_server, redis_conn):
    cfg = write_config(tmp_path, redis_server.url, max_backlog=5)
    old_files(tmp_path / "one", 12)
    t0 = time.monotonic()
    r = cli(cfg, "scan", "--backlog-wait", "2", timeout=40)  # no worker runs: the backlog never drains
    took = time.monotonic() - t0
    assert r.returncode == 3, r.stdout + r.stderr
    assert "backlog full" in r.stderr and "5 files queued, max_backlog 5" in r.stderr, r.stderr
    assert "7 files not sent" in r.stderr, r.stderr
    assert took < 20
    assert json.loads(cli(cfg, "status", "--json").stdout)["zones"]["one"]["queued"] == 5


def test_retry_without_a_daemon_says_the_files_wait_for_it(tmp_path, redis_server, redis_conn):
    from irods_ingestd.ledger import Ledger

    cfg = write_config(tmp_path, redis_server.url)
    ledger = Ledger(redis_conn)
    ledger.mark_failed("one", "a.txt", 1, 1, "test failure")
    r = cli(cfg, "retry")
    assert r.returncode == 0, r.stderr
    assert "failed files queued again" not in r.stdout, r.stdout  # the old claim, untrue without a daemon
    assert "1 failed files will be queued again when the daemon runs (no daemon runs zone one)" in r.stdout


def test_retry_with_a_daemon_names_it(tmp_path, redis_server, redis_conn):
    from irods_ingestd.ledger import Ledger

    cfg = write_config(tmp_path, redis_server.url)
    f = tmp_path / "one" / "a.txt"
    f.write_text("a")
    Ledger(redis_conn).mark_failed("one", "a.txt", f.stat().st_size, f.stat().st_mtime_ns, "test failure")
    dcfg = make_config(tmp_path, redis_server.url, [{"name": "one", "path": str(tmp_path / "one"),
                                                     "collection": "/tempZone/home/rods/one", "settle": "0.3s"}])
    with DaemonThread(dcfg, redis_conn):
        assert wait_for(lambda: redis_conn.keys("ingestd:daemon:*"), timeout=10)
        r = cli(cfg, "retry")
        assert r.returncode == 0, r.stderr
        assert "1 failed files queued again: handed to the daemon on host " in r.stdout, r.stdout
        assert wait_for(lambda: Ledger(redis_conn).stats("one")["queued"] == 1, timeout=10)


def test_status_names_each_counter_once(tmp_path, redis_server, redis_conn):
    cfg = write_config(tmp_path, redis_server.url)
    dcfg = make_config(tmp_path, redis_server.url, [{"name": "one", "path": str(tmp_path / "one"),
                                                     "collection": "/tempZone/home/rods/one", "settle": "0.3s"}])
    with DaemonThread(dcfg, redis_conn) as dt:
        for i in range(3):
            (tmp_path / "one" / f"f{i}").write_text("x")
        assert wait_for(lambda: dt.daemon.enqueuer.backlog(0) == 3, timeout=10)
        from irods_ingestd.ledger import Ledger

        f = tmp_path / "one" / "f0"
        Ledger(redis_conn).mark_done("one", "f0", f.stat().st_size, f.stat().st_mtime_ns, b"")
        time.sleep(1.2)
        out = cli(cfg, "status").stdout
    daemon_line = next(x for x in out.splitlines() if x.startswith("daemon:"))
    zone_line = next(x for x in out.splitlines() if x.startswith("zone one:"))
    # `queued` is what waits for or is in a worker, on both lines; what the daemon sent is named otherwise
    assert "queued 2" in zone_line, out
    assert "queued 2" in daemon_line and "sent to the queue since start 3" in daemon_line, out
