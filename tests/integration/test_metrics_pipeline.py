"""Issue 15.1: the daemon and a worker, each a real `irods-ingestd` process with its metrics endpoint,
ingest files into the real iRODS; scraping both endpoints finds the counts they ingested.

The worker runs as systemd runs `irods-ingestd-worker@2`: $IRODS_INGESTD_WORKER_INSTANCE=2, so it listens on
worker_listen's port + 2.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from irods_ingestd.ledger import Ledger
from tests.pipeline_harness import Pipeline

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "packaging" / "grafana" / "irods-ingestd.json"


def free_port(n: int = 1) -> int:
    """A port p with p..p+n-1 free just now."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            p = s.getsockname()[1]
        if p + n < 65535 and all(_free(p + i) for i in range(n)):
            return p
    raise AssertionError("no free ports")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


class Proc:
    def __init__(self, cfg: Path, log: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.log = log
        self._f = open(log, "w")
        self.p = subprocess.Popen([sys.executable, "-m", "irods_ingestd", "--log-target", "stderr", "-c", str(cfg),
                                   *args], stderr=self._f, stdout=subprocess.DEVNULL, cwd=ROOT,
                                  env={**os.environ, **(env or {})})

    def stop(self) -> None:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(20)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(5)
        self._f.close()


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """sample name and sorted labels → value; every family's names (with no sample too) under ("#", name)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for fam in text_string_to_metric_families(text):
        for suffix in ("", "_total", "_bucket", "_count", "_sum"):
            out[("#", ((fam.name + suffix, ""),))] = 0.0
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def wait_scrape(port: int, timeout: float = 20.0) -> dict[Any, float]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return scrape(port)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def value(m: dict[Any, float], name: str, **labels: str) -> float:
    return m.get((name, tuple(sorted(labels.items()))), 0.0)


def test_scraping_the_daemon_and_a_worker_finds_what_they_ingested(tmp_path, redis_server, redis_conn, irods):
    p = Pipeline(tmp_path, redis_server.url, irods)
    p.cleanup()
    dport, wbase = free_port(), free_port(3)
    with open(p.config_path, "a") as f:
        f.write(f'\n[metrics]\nlisten = "127.0.0.1:{dport}"\nworker_listen = "127.0.0.1:{wbase}"\n')
    sizes = {}
    for i in range(12):
        rel = f"d{i % 3}/f{i:02d}.dat"
        (p.root / rel).parent.mkdir(parents=True, exist_ok=True)
        (p.root / rel).write_bytes(os.urandom(100 + i))
        sizes[rel] = 100 + i
    daemon = Proc(p.config_path, tmp_path / "daemon.log", "run")
    worker = Proc(p.config_path, tmp_path / "worker.log", "worker", env={"IRODS_INGESTD_WORKER_INSTANCE": "2"})
    try:
        ledger = Ledger(redis_conn)
        deadline = time.monotonic() + 90
        while ledger.stats("z")["done"] < len(sizes) and time.monotonic() < deadline:
            assert daemon.p.poll() is None and worker.p.poll() is None, (tmp_path / "daemon.log").read_text()
            time.sleep(0.3)
        assert ledger.stats("z")["done"] == len(sizes), (tmp_path / "worker.log").read_text()
        time.sleep(1.5)  # the daemon's snapshot is a second old at most
        w = wait_scrape(wbase + 2)
        d = wait_scrape(dport)
    finally:
        worker.stop()
        daemon.stop()
        p.cleanup()
    n, nbytes = len(sizes), sum(sizes.values())
    # the worker: files and bytes by zone and result, latencies, iRODS calls by adapter function
    assert value(w, "irods_ingestd_files_total", zone="z", result="ingested") == n
    assert value(w, "irods_ingestd_bytes_total", zone="z", result="ingested") == nbytes
    assert value(w, "irods_ingestd_files_total", zone="z", result="failed") == 0
    assert value(w, "irods_ingestd_queue_latency_seconds_count", zone="z") == n
    assert value(w, "irods_ingestd_ingest_latency_seconds_count", zone="z") == n
    assert value(w, "irods_ingestd_ingest_latency_seconds_sum", zone="z") >= \
        value(w, "irods_ingestd_queue_latency_seconds_sum", zone="z") > 0
    assert value(w, "irods_ingestd_irods_call_seconds_count", api="set_metadata") >= n
    assert value(w, "irods_ingestd_irods_call_seconds_count", api="ensure_collection") >= 3
    assert value(w, "irods_ingestd_redis_up") == 1 and value(w, "irods_ingestd_irods_up") == 1
    # the daemon: what it queued, its zone's state and the ledger's numbers, walks, reachability
    assert value(d, "irods_ingestd_files_queued_total", zone="z") == n
    assert value(d, "irods_ingestd_settle_latency_seconds_count", zone="z") == n
    assert value(d, "irods_ingestd_ingested_files", zone="z") == n
    assert value(d, "irods_ingestd_queued_files", zone="z") == 0
    assert value(d, "irods_ingestd_failed_files", zone="z") == 0
    assert value(d, "irods_ingestd_zone_state", zone="z", state="watching") == 1
    assert value(d, "irods_ingestd_zone_state", zone="z", state="lost") == 0
    assert value(d, "irods_ingestd_walk_seconds_count", zone="z") >= 1
    assert value(d, "irods_ingestd_redis_up") == 1 and value(d, "irods_ingestd_irods_up") == 1
    assert value(d, "irods_ingestd_files_total", zone="z", result="ingested") == 0  # each endpoint its own
    # every metric the Grafana dashboard shows is one these endpoints export
    exported = {labels[0][0] for name, labels in [*w, *d] if name == "#"}
    panels = json.loads(GRAFANA.read_text())["panels"]
    used = {m for pnl in panels for t in pnl.get("targets", []) for m in re.findall(r"irods_ingestd_\w+", t["expr"])}
    assert used and used <= exported, used - exported


def test_a_port_in_use_is_logged_and_the_worker_goes_on(tmp_path, redis_server, redis_conn, irods):
    p = Pipeline(tmp_path, redis_server.url, irods)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with open(p.config_path, "a") as f:
            f.write(f'\n[metrics]\nworker_listen = "127.0.0.1:{port}"\n')
        worker = Proc(p.config_path, tmp_path / "worker.log", "worker", "--burst")
        try:
            assert worker.p.wait(60) == 0
        finally:
            worker.stop()
    log = (tmp_path / "worker.log").read_text()
    assert f"cannot serve metrics on 127.0.0.1:{port}" in log, log


@pytest.mark.parametrize("instance, problem", [("gpu", "is not a number")])
def test_a_worker_instance_that_is_not_a_number_serves_no_metrics(tmp_path, redis_server, redis_conn, irods,
                                                                   instance, problem):
    p = Pipeline(tmp_path, redis_server.url, irods)
    with open(p.config_path, "a") as f:
        f.write(f'\n[metrics]\nworker_listen = "127.0.0.1:{free_port()}"\n')
    worker = Proc(p.config_path, tmp_path / "worker.log", "worker", "--burst",
                  env={"IRODS_INGESTD_WORKER_INSTANCE": instance})
    try:
        assert worker.p.wait(60) == 0
    finally:
        worker.stop()
    assert problem in (tmp_path / "worker.log").read_text()


def test_the_daemon_gauges_follow_a_zone_that_is_lost_and_back(tmp_path, redis_server, redis_conn, irods):
    """In one process (the daemon's loop in a thread): the endpoint lives from start to close, and the zone's
    state gauge says lost while its directory is gone."""
    p = Pipeline(tmp_path, redis_server.url, irods)
    port = free_port()
    with open(p.config_path, "a") as f:
        f.write(f'\n[metrics]\nlisten = "127.0.0.1:{port}"\n')
    from irods_ingestd.config import load

    p.cfg = load(p.config_path)
    assert p.root is not None
    try:
        with p:
            (p.root / "a.dat").write_bytes(b"a")
            p.drain(min_done=1)
            time.sleep(1.2)
            m = wait_scrape(port)
            assert value(m, "irods_ingestd_zone_state", zone="z", state="watching") == 1
            assert value(m, "irods_ingestd_ingested_files", zone="z") == 1
            (p.root / "a.dat").unlink()
            p.root.rmdir()
            deadline = time.monotonic() + 10
            while value(m, "irods_ingestd_zone_state", zone="z", state="lost") != 1 and time.monotonic() < deadline:
                time.sleep(0.3)
                m = scrape(port)
            assert value(m, "irods_ingestd_zone_state", zone="z", state="lost") == 1
            assert value(m, "irods_ingestd_zone_state", zone="z", state="watching") == 0
            p.root.mkdir()
        with pytest.raises(OSError):
            scrape(port)  # closed with the daemon
    finally:
        p.cleanup()
