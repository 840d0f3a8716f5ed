"""Redis under Sentinel: the daemon and a worker, both real processes started by the CLI, reach Redis only
through three sentinels; the master is failed over (SENTINEL FAILOVER) and then killed while files arrive, and
every file still ends up in the real iRODS exactly once (copied once; found present if queued again)."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from irods.column import Like
from irods.models import Collection, DataObject

from irods_ingestd.config import load
from irods_ingestd.ledger import Ledger
from irods_ingestd.redisconn import connect
from tests.landing import remove_collections
from tests.sentinel_harness import SentinelCluster, sentinel_cluster_fixture  # noqa: F401 - the fixture

ROOT = Path(__file__).resolve().parents[2]


def _config(tmp: Path, cluster: SentinelCluster, irods: Any, collection: str) -> Path:
    env = irods.write_env_file(tmp / "irods_environment.json")
    pw = tmp / "irods-password"
    pw.write_text(irods.password)
    pw.chmod(0o600)
    (tmp / "landing").mkdir()
    sentinels = ", ".join(f'"{a}"' for a in cluster.sentinel_addrs)
    cfg = tmp / "config.toml"
    cfg.write_text(f'[redis]\nsentinels = [{sentinels}]\nsentinel_master = "{cluster.master_name}"\n'
                   f'prefix = "sentinel-test"\n[irods]\nenvironment_file = "{env}"\npassword_file = "{pw}"\n'
                   f'[queue]\nname = "sentinel-test"\nretries = 2\nbackoff = "0.1s"\n'
                   f'[[zone]]\nname = "s"\npath = "{tmp / "landing"}"\ncollection = "{collection}"\n'
                   f'settle = "0.3s"\nrescan = "300s"\n')
    cfg.chmod(0o600)
    return cfg


def _start(cfg: Path, log: Path, *args: str) -> subprocess.Popen:  # type: ignore[type-arg]
    return subprocess.Popen([sys.executable, "-m", "irods_ingestd", "--log-target", "stderr", "--log-level", "info",
                             "-c", str(cfg), *args], stderr=open(log, "w"), stdout=subprocess.DEVNULL, cwd=ROOT)


def _objects(irods: Any, coll: str) -> dict[str, int]:
    with irods.session() as s:
        out = {}
        for cond in (Collection.name == coll, Like(Collection.name, coll + "/%")):
            for r in s.query(Collection.name, DataObject.name, DataObject.size).filter(cond):
                out[f"{r[Collection.name]}/{r[DataObject.name]}"[len(coll) + 1:]] = int(r[DataObject.size])
        return out


def _stop(*procs: subprocess.Popen) -> None:  # type: ignore[type-arg]
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


def _write(landing: Path, names: list[str], pause: float = 0.0) -> None:
    for n in names:
        (landing / n).write_text(f"content of {n}\n")
        if pause:
            time.sleep(pause)


def test_ingest_goes_on_through_a_failover_and_a_killed_master(tmp_path: Path, irods: Any,
                                                               sentinel_cluster: SentinelCluster) -> None:
    c = sentinel_cluster
    coll = f"{irods.home}/sentinel-test-{time.time_ns()}"
    cfg_path = _config(tmp_path, c, irods, coll)
    cfg = load(cfg_path)
    ledger = Ledger(connect(cfg.redis), cfg.redis.prefix)
    landing = tmp_path / "landing"
    daemon = _start(cfg_path, tmp_path / "daemon.log", "run")
    worker = _start(cfg_path, tmp_path / "worker.log", "worker", "--name", "sentinel-w1")
    expected: list[str] = []

    def wait_done(timeout: float) -> None:
        """Until every expected file is in the ledger as ingested and nothing is queued."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if all(e is not None and e.state == b"D" for e in ledger.get_many("s", expected)) and \
                        ledger.stats("s")["queued"] == 0:
                    return
            except Exception:  # noqa: BLE001,S110 - the test's own client rides the failover too
                pass
            assert daemon.poll() is None and worker.poll() is None, "daemon or worker died"
            time.sleep(0.2)
        raise AssertionError(f"{ledger.stats('s')} after {timeout}s, not done: {_undone()}; daemon log:\n"
                             f"{(tmp_path / 'daemon.log').read_text()[-3000:]}\nworker log:\n"
                             f"{(tmp_path / 'worker.log').read_text()[-3000:]}")

    def _undone() -> list[Any]:
        from rq import Queue
        from rq.job import Job
        from rq.registry import StartedJobRegistry

        out: list[Any] = []
        for n, e in zip(expected, ledger.get_many("s", expected), strict=True):
            if e is None or e.state != b"D":
                job: Any = None
                if e is not None and e.job:
                    try:
                        q = Queue(cfg.queue.name, connection=ledger.r)
                        job = (Job.fetch(e.job, connection=ledger.r).get_status(),
                               {"queue": e.job in q.get_job_ids(),
                                "intermediate": e.job.encode() in ledger.r.lrange(q.intermediate_queue_key, 0, -1),
                                "started": e.job in StartedJobRegistry(queue=q).get_job_ids()})
                    except Exception as ex:  # noqa: BLE001
                        job = repr(ex)
                out.append((n, e, job))
        return out

    try:
        first = [f"a{i:03d}.txt" for i in range(15)]
        _write(landing, first)
        expected += first
        wait_done(30)

        # files arrive while the sentinels promote the replica
        during = [f"b{i:03d}.txt" for i in range(30)]
        writer = threading.Thread(target=_write, args=(landing, during, 0.05))
        writer.start()
        time.sleep(0.3)
        old = c.master_port()
        new = c.failover()
        writer.join()
        expected += during
        assert new != old
        c.wait_demoted(old)  # files go on arriving and being ingested meanwhile

        # and while the master's process is killed (the sentinels then need down-after-milliseconds to agree)
        killed = [f"c{i:03d}.txt" for i in range(20)]
        writer = threading.Thread(target=_write, args=(landing, killed, 0.05))
        writer.start()
        c.kill_master()
        writer.join()
        expected += killed
        # a job whose end only the old master heard of is found abandoned by its missing heartbeat (~35 s) and
        # run again: its files are then recorded as already present; a job whose start only the old master
        # heard of is put back on the queue by the daemon's reaper (`stuck_jobs.GRACE`, 20 s)
        wait_done(60)
        stats = ledger.stats("s")
    finally:
        _stop(worker, daemon)
        objs = _objects(irods, coll)
        remove_collections(irods, coll)
    assert sorted(objs) == sorted(expected), sorted(set(objs) ^ set(expected))
    assert all(objs[n] == len(f"content of {n}\n") for n in expected)
    assert stats["failed"] == 0 and stats["queued"] == 0, stats  # `done` counts a file recorded again too
    wlog = (tmp_path / "worker.log").read_text()
    dlog = (tmp_path / "daemon.log").read_text()
    # never copied twice: a file queued again after a failover is found present (a copy whose end Redis did not
    # hear of, the master being killed under it, is logged only as found present when its job runs again)
    results = [(m.group(1), m.group(2).strip('"')) for m in
               re.finditer(r'INGEST_PATH=\S*/landing/(\S+) .*INGEST_RESULT=("[^"]*"|\S+)', wlog)]
    puts = Counter(path for path, result in results if result == "ingested")
    assert max(puts.values()) == 1, puts.most_common(3)
    assert {path for path, _ in results} == set(expected)
    # a worker cut off from Redis mid-file leaves it (its lock lost) or finds it locked, to be queued again
    assert {result for _, result in results} <= {"ingested", "already-present", "lock lost",
                                                  "locked by another worker, resettled"}, Counter(r for _, r in results)
    assert "(Sentinel failover): reconnecting" in dlog and "walking every zone" in dlog
    assert "(Sentinel failover): reconnecting" in wlog and "Traceback" not in wlog + dlog
