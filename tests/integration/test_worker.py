"""The RQ worker: non-forking session reuse, warm shutdown on SIGTERM, heartbeats of a killed worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from rq import Queue, Worker
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry

from irods_ingestd import config as config_mod
from irods_ingestd import irods_session, tasks
from irods_ingestd.job import TASK_FUNC, Batch, FileItem, ZoneSpec
from irods_ingestd.ledger import Ledger
from irods_ingestd.worker import run_worker
from tests.landing import remove_collections

REPO = Path(__file__).resolve().parents[2]


@dataclass
class WEnv:
    tmp: Path
    root: Path
    coll: str
    cfg_path: Path
    queue_name: str
    r: redis.Redis
    irods: Any

    def config(self) -> config_mod.Config:
        return config_mod.load(self.cfg_path)

    def enqueue(self, rels: list[str], size: int = 1000) -> Job:
        items = []
        for rel in rels:
            p = self.root / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(os.urandom(size))
            st = p.stat()
            items.append(FileItem(rel, st.st_size, st.st_mtime_ns))
        cfg = self.config()
        batch = Batch(ZoneSpec.from_config(cfg.zones[0]), tuple(items))
        pipe = self.r.pipeline()
        Ledger(self.r, "ingestd").mark_queued(pipe, "w1", [(f.rel, f.size, f.mtime_ns) for f in items])
        pipe.execute()
        return Queue(self.queue_name, connection=self.r).enqueue(TASK_FUNC, batch.to_record(), job_id=batch.id,
                                                                 job_timeout=120)

    def spawn(self, *extra: str) -> subprocess.Popen:
        code = ("import logging, sys; logging.basicConfig(level=logging.INFO, stream=sys.stderr); "
                "from irods_ingestd.config import load; from irods_ingestd.worker import run_worker; "
                f"run_worker(load({str(self.cfg_path)!r}), job_monitoring_interval=1{''.join(extra)})")
        return subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)

    def wait_worker(self, n: int = 1, timeout: float = 15) -> None:
        q = Queue(self.queue_name, connection=self.r)
        deadline = time.monotonic() + timeout
        while len(Worker.all(queue=q)) < n:
            assert time.monotonic() < deadline, "worker did not register"
            time.sleep(0.05)


@pytest.fixture
def wenv(tmp_path: Path, irods: Any, redis_server: Any, redis_conn: redis.Redis) -> Iterator[WEnv]:
    root = tmp_path / "landing"
    root.mkdir()
    envfile = irods.write_env_file(tmp_path / "irods_environment.json")
    pwfile = tmp_path / "pw"
    pwfile.write_text(irods.password + "\n")
    pwfile.chmod(0o600)
    coll = f"{irods.home}/w-{uuid.uuid4().hex[:8]}"
    qname = f"q-{uuid.uuid4().hex[:8]}"
    cfg = tmp_path / "config.toml"
    cfg.write_text(f"""
[redis]
url = "{redis_server.url}"
[irods]
environment_file = "{envfile}"
password_file = "{pwfile}"
connection_timeout = "20s"
[queue]
name = "{qname}"
retries = 1
backoff = "0.05s"
job_timeout = "2m"
[[zone]]
name = "w1"
path = "{root}"
collection = "{coll}"
""")
    yield WEnv(tmp_path, root, coll, cfg, qname, redis_conn, irods)
    tasks.set_context(None)
    remove_collections(irods, coll)


def test_burst_worker_reuses_one_session_across_jobs(wenv: WEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    jobs = [wenv.enqueue([f"j{i}/a.dat", f"j{i}/b.dat"]) for i in range(4)]
    if not wenv.irods.real:
        wenv.irods.reset_counters()
    made: list[Any] = []
    real_make = irods_session.make_session

    def make_session(cfg: Any) -> Any:
        made.append(real_make(cfg))
        return made[-1]

    monkeypatch.setattr(irods_session, "make_session", make_session)
    assert run_worker(wenv.config(), burst=True, name=f"t-{uuid.uuid4().hex[:6]}")
    for j in jobs:
        j.refresh()
        assert j.get_status() == JobStatus.FINISHED, j.exc_info
        assert j.return_value()["ingested"] == 2
    assert len(made) == 1, made  # one session for four jobs
    if not wenv.irods.real:
        c = wenv.irods.counters()
        assert c["connections_accepted"] == 1, c  # one session (one connection) for four jobs
    with wenv.irods.session() as sess:
        assert sess.data_objects.exists(f"{wenv.coll}/j3/b.dat")


@pytest.mark.standin  # iRODS slowed down on demand (set_delay)
def test_sigterm_lets_the_running_job_finish(wenv: WEnv) -> None:
    proc = wenv.spawn()
    try:
        wenv.wait_worker()
        wenv.irods.set_delay(0.1)  # every iRODS request takes 0.1 s: the job takes a few seconds
        job = wenv.enqueue([f"slow/{i}.dat" for i in range(3)])
        deadline = time.monotonic() + 15
        while job.get_status(refresh=True) != JobStatus.STARTED:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out
        assert job.get_status(refresh=True) == JobStatus.FINISHED, out
        assert job.return_value()["ingested"] == 3, out
        assert "warm shut down" in out.lower() or "stopping" in out.lower() or "shutdown" in out.lower(), out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        wenv.irods.set_delay(0)
    with wenv.irods.session() as sess:
        for i in range(3):
            assert sess.data_objects.exists(f"{wenv.coll}/slow/{i}.dat")


@pytest.mark.standin  # iRODS slowed down on demand (set_delay)
def test_a_killed_workers_job_is_found_by_its_missing_heartbeat(wenv: WEnv) -> None:
    proc = wenv.spawn()
    try:
        wenv.wait_worker()
        wenv.irods.set_delay(0.3)
        job = wenv.enqueue([f"killed/{i}.dat" for i in range(20)])
        deadline = time.monotonic() + 15
        while job.get_status(refresh=True) != JobStatus.STARTED:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        time.sleep(2.5)  # a couple of heartbeats
        q = Queue(wenv.queue_name, connection=wenv.r)
        reg = StartedJobRegistry(queue=q)
        assert job.id in reg.get_job_ids()
        proc.kill()
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        wenv.irods.set_delay(0)
    killed_at = time.monotonic()
    # ttl = 3 intervals + 5 s = 8 s: well before the job's 120 s timeout, the registry gives it up
    while True:
        reg.cleanup()
        if job.get_status(refresh=True) != JobStatus.STARTED:
            break
        assert time.monotonic() - killed_at < 15, "abandoned job not detected"
        time.sleep(0.5)
    assert job.get_status(refresh=True) in (JobStatus.FAILED, JobStatus.QUEUED)


def test_plain_rq_worker_context_loads_the_default_config(wenv: WEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under a plain `rq worker` nothing sets the context: the job loads $IRODS_INGESTD_CONFIG."""
    monkeypatch.setenv(config_mod.CONFIG_ENV, str(wenv.cfg_path))
    tasks.set_context(None)
    job = wenv.enqueue(["plain/a.dat"])
    summary = tasks.ingest_batch(job.args[0])
    assert summary["ingested"] == 1
    ctx = tasks.get_context()
    assert ctx.config.source == str(wenv.cfg_path)
    ctx.sessions.cleanup()


def test_retry_failed_hands_failures_back(wenv: WEnv) -> None:
    cfg = wenv.config()
    ctx = tasks.make_context(cfg)
    ctx.ledger.mark_failed("w1", "bad/one", 3, 4, "conflict: x", "conflict")
    assert tasks.retry_failed(cfg, "w1", ctx=ctx) == 1
    assert list(ctx.ledger.failures("w1")) == []
    assert ctx.ledger.get("w1", "bad/one") is None
    assert ctx.ledger.pop_resettle("w1") == ["bad/one"]


@pytest.mark.standin  # iRODS slowed down on demand (set_delay)
def test_worker_survives_redis_going_away_mid_job_and_stops_on_sigterm_when_idle(wenv: WEnv,
                                                                                 redis_server: Any) -> None:
    proc = wenv.spawn()
    try:
        wenv.wait_worker()
        wenv.irods.set_delay(0.1)
        job = wenv.enqueue([f"before/{i}.dat" for i in range(3)])
        deadline = time.monotonic() + 15
        while job.get_status(refresh=True) != JobStatus.STARTED:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        redis_server.stop(kill=True)  # mid-job (no persistence: the queue is gone too)
        wenv.irods.set_delay(0)
        time.sleep(8.0)  # the job ends while Redis is away: RQ's own loop gives up
        redis_server.start()
        wenv.r = redis_server.client()
        time.sleep(3.0)
        assert proc.poll() is None, "the worker quit when Redis went away:\n" + proc.communicate()[0]
        job2 = wenv.enqueue(["after/a.dat"])
        deadline = time.monotonic() + 40
        while job2.get_status(refresh=True) != JobStatus.FINISHED:
            assert time.monotonic() < deadline, "the worker did not come back"
            assert proc.poll() is None
            time.sleep(0.1)
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)  # idle now: stops at once, exit 0
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, out
        assert "stopped on an error; starting again" in out, out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        wenv.irods.set_delay(0)
