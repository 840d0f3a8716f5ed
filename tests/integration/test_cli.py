"""The commands as a user runs them: run (SIGHUP reload, SIGTERM), status, scan."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.daemon_harness import queued, wait_for

ROOT = Path(__file__).resolve().parents[2]


def write_config(tmp: Path, redis_url: str, zones: list[str]) -> Path:
    env = tmp / "env.json"
    env.write_text("{}")
    body = f'[redis]\nurl = "{redis_url}"\n[irods]\nenvironment_file = "{env}"\n[queue]\nname = "ingest-test"\n'
    for z in zones:
        (tmp / z).mkdir(exist_ok=True)
        body += (f'[[zone]]\nname = "{z}"\npath = "{tmp / z}"\ncollection = "/tempZone/home/rods/{z}"\n'
                 f'settle = "0.5s"\n')
    cfg = tmp / "config.toml"
    cfg.write_text(body)
    return cfg


def cli(cfg: Path, *args: str, **kw) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
    return subprocess.run([sys.executable, "-m", "irods_ingestd", "--log-target", "stderr", "-c", str(cfg),
                           *args], capture_output=True, text=True, cwd=ROOT, timeout=60, **kw)


def status(cfg: Path) -> dict:
    r = cli(cfg, "status", "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_run_reload_status_and_stop(tmp_path, redis_server, redis_conn):
    cfg = write_config(tmp_path, redis_server.url, ["one"])
    log = open(tmp_path / "daemon.log", "w")
    p = subprocess.Popen([sys.executable, "-m", "irods_ingestd", "--log-target", "stderr", "-c", str(cfg), "run"],
                         stderr=log, cwd=ROOT)
    try:
        assert wait_for(lambda: status(cfg)["daemons"], timeout=15), (tmp_path / "daemon.log").read_text()
        (tmp_path / "one" / "a.txt").write_text("a")
        assert wait_for(lambda: status(cfg)["zones"]["one"]["queued"] == 1, timeout=10)
        s = status(cfg)
        assert s["zones"]["one"]["state"] == "watching"
        assert s["queue"]["jobs_waiting"] == 1
        # add a zone and reload
        cfg2 = write_config(tmp_path, redis_server.url, ["one", "two"])
        assert cfg2 == cfg
        (tmp_path / "two" / "b.txt").write_text("b")
        p.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "two" in status(cfg)["daemons"][0]["zones"], timeout=10)
        assert wait_for(lambda: len(queued(redis_conn)) == 2, timeout=10)
        # a broken config on reload is refused and the daemon keeps running
        cfg.write_text(cfg.read_text() + "bogus = 1\n")
        p.send_signal(signal.SIGHUP)
        time.sleep(1.0)
        assert p.poll() is None
        p.send_signal(signal.SIGTERM)
        assert p.wait(10) == 0
    finally:
        if p.poll() is None:
            p.kill()
        log.close()
    text = (tmp_path / "daemon.log").read_text()
    assert "configuration reloaded: 2 zones (one, two)" in text
    assert "reload refused" in text and "unknown key 'bogus'" in text
    assert sorted(x[1] for x in queued(redis_conn)) == ["a.txt", "b.txt"]


def test_status_human_readable_without_daemon(tmp_path, redis_server, redis_conn):
    cfg = write_config(tmp_path, redis_server.url, ["one"])
    r = cli(cfg, "status")
    assert r.returncode == 0, r.stderr
    assert "daemon: not running" in r.stdout
    assert "zone one: daemon not running; settling 0, queued 0, ingested 0" in r.stdout


def test_scan_queues_an_existing_tree_and_exits(tmp_path, redis_server, redis_conn):
    cfg = write_config(tmp_path, redis_server.url, ["one", "two"])
    old = time.time() - 600
    for i in range(30):
        p = tmp_path / "one" / f"sub{i % 3}" / f"f{i}"
        p.parent.mkdir(exist_ok=True)
        p.write_text(str(i))
        os.utime(p, (old, old))
    (tmp_path / "one" / "new.txt").write_text("recent: settles first")
    (tmp_path / "two" / "other.txt").write_text("not scanned")
    r = cli(cfg, "scan", "--zone", "one")
    assert r.returncode == 0, r.stderr
    assert "scan: sent 31 files to the queue" in r.stdout
    got = queued(redis_conn)
    assert len(got) == 31 and {z for z, *_ in got} == {"one"}
    r = cli(cfg, "scan", "--zone", "one")
    assert "scan: sent 0 files to the queue" in r.stdout
    r = cli(cfg, "scan", "--zone", "nope")
    assert r.returncode == 2 and "no zone named 'nope'" in r.stderr
