"""Break-it probes, process faults: workers and the daemon SIGKILLed at the worst moments, against the real
iRODS 5.0.2, a real Redis and the real daemon and worker processes (tests/adv_faults_harness.py).

The promise: every complete landing file reaches iRODS once, verified, with its metadata; never twice,
never half-written, nothing lost; no temporary copy stays behind for ever.
"""

from __future__ import annotations

import hashlib
import os
import random
import time
from pathlib import Path
from typing import Any

import pytest

from irods_ingestd import names
from irods_ingestd.ledger import DONE
from tests import adv_faults_harness as h
from tests.expect import sha2
from tests.pipeline_harness import Pipeline, pipelines

FAST = {"ADVF_LOCK_TTL": "4"}


@pytest.fixture
def make_pipe(tmp_path: Path, redis_server: Any, redis_conn: Any, irods: Any) -> Any:
    with pipelines(tmp_path, redis_server.url, irods, readable=False) as make:
        yield make


def file_sha2(path: Path) -> str:
    import base64

    d = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            d.update(chunk)
    return "sha2:" + base64.b64encode(d.digest()).decode()


def stats(pipe: Pipeline) -> dict[str, int]:
    return pipe.ledger.stats(pipe.name)


def settled(pipe: Pipeline, rels: list[str]) -> bool:
    """Every one of these files is recorded done in the ledger and nothing is queued."""
    entries = pipe.ledger.get_many(pipe.name, rels)
    return stats(pipe)["queued"] == 0 and all(e is not None and e.state == DONE for e in entries)


def no_parts(objs: dict[str, Any]) -> list[str]:
    return [r for r in objs if ".ingestd" in r]


# --- a worker SIGKILLed in the middle of a 200 MiB put ------------------------------------------------------
@pytest.mark.parametrize("lock_ttl", ["4", "default"])
def test_a_worker_killed_in_the_middle_of_a_large_put(make_pipe: Any, tmp_path: Path, lock_ttl: str) -> None:
    """lock_ttl default: the dead worker's file lock (35 s) outlives its job's heartbeat (8 s here); the next
    worker of this machine sees its holder's pid is gone and takes the lock over at once (it waited out the
    35 s before: 40 s for this test, 15 s now)."""
    fast = FAST if lock_ttl != "default" else {}
    pipe = make_pipe()
    big = pipe.root / "big.bin"
    with open(big, "wb") as f:
        for _ in range(200):
            f.write(os.urandom(1 << 20))
    want = file_sha2(big)
    part = names.target_for(pipe.collection, "big.bin").part_path
    with pipe:
        h.wait(lambda: stats(pipe)["queued"] == 1, 20, "the file to be queued")
        w1 = h.worker(pipe.config_path, tmp_path / "w1.log", "advf-w1", ADVF_KILL_AT_BYTES=str(100 << 20), **fast)
        h.wait(lambda: not w1.alive, 60, "the worker to kill itself in the middle of the copy")
        assert "killing myself after" in w1.text(), w1.text()
        objs = h.objects(pipe.irods, pipe.collection)
        assert part[len(pipe.collection) + 1:] in objs and "big.bin" not in objs, objs  # killed mid-put
        w2 = h.worker(pipe.config_path, tmp_path / "w2.log", "advf-w2", **fast)
        try:
            h.wait(lambda: settled(pipe, ["big.bin"]), 90, "the abandoned job to be found and the file ingested")
        finally:
            w2.stop()
        if lock_ttl == "default":
            assert "took over the lock" in w2.text() and "that is gone (pid " in w2.text(), w2.text()[-3000:]
    objs = h.objects(pipe.irods, pipe.collection)
    assert objs.keys() == {"big.bin"}, objs  # once; the killed copy's temporary object is gone
    assert objs["big.bin"][0] == want and objs["big.bin"][2] == 1
    assert dict(pipe.ledger.failures(pipe.name)) == {}
    assert stats(pipe)["done"] == 1, stats(pipe)  # status counts each file once


@pytest.mark.parametrize("then", ["deleted", "changed"])
def test_a_killed_put_whose_landing_file_then_goes_leaves_no_temporary_object(make_pipe: Any, tmp_path: Path,
                                                                              then: str) -> None:
    """The worker dies in the middle of the copy, then the landing file is deleted (or rewritten) before the
    job is run again: the temporary object of the dead copy must not stay in iRODS for ever."""
    pipe = make_pipe()
    f = pipe.root / "gone.bin"
    f.write_bytes(os.urandom(48 << 20))
    part = names.target_for(pipe.collection, "gone.bin").part_path[len(pipe.collection) + 1:]
    with pipe:
        h.wait(lambda: stats(pipe)["queued"] == 1, 20, "the file to be queued")
        w1 = h.worker(pipe.config_path, tmp_path / "w1.log", "advf-w1", ADVF_KILL_AT_BYTES=str(16 << 20), **FAST)
        h.wait(lambda: not w1.alive, 60, "the worker to kill itself in the middle of the copy")
        assert part in h.objects(pipe.irods, pipe.collection)
        if then == "deleted":
            f.unlink()
        else:
            f.write_bytes(b"a short new version")
        w2 = h.worker(pipe.config_path, tmp_path / "w2.log", "advf-w2", **FAST)
        try:
            h.wait(lambda: stats(pipe)["queued"] == 0 and "job" not in h.rq_state(pipe.r, pipe.cfg.queue.name)
                   and part not in h.objects(pipe.irods, pipe.collection), 60,
                   lambda: f"the dead copy's temporary object to go: {h.objects(pipe.irods, pipe.collection)}")
        finally:
            w2.stop()
    objs = h.objects(pipe.irods, pipe.collection)
    assert objs == {} if then == "deleted" else set(objs) == {"gone.bin"}, objs
    assert dict(pipe.ledger.failures(pipe.name)) == {}


# --- a worker SIGKILLed after the object got its final name, before the ledger heard of it -------------------
def test_a_worker_killed_between_the_put_and_its_ledger_record(make_pipe: Any, tmp_path: Path) -> None:
    pipe = make_pipe(after="delete", after_hold="0s")
    data = {f"f{i}.dat": os.urandom(1000 + i) for i in range(3)}
    for rel, b in data.items():
        (pipe.root / rel).write_bytes(b)
    with pipe:
        h.wait(lambda: stats(pipe)["queued"] == 3, 20, "the files to be queued")
        w1 = h.worker(pipe.config_path, tmp_path / "w1.log", "advf-w1", ADVF_KILL_AFTER_ATTEMPT="1", **FAST)
        h.wait(lambda: not w1.alive, 60, "the worker to kill itself after its first put")
        first = h.objects(pipe.irods, pipe.collection)
        assert len(first) == 1 and stats(pipe)["done"] == 0, (first, stats(pipe))  # in iRODS, not in the ledger
        w2 = h.worker(pipe.config_path, tmp_path / "w2.log", "advf-w2", **FAST)
        try:
            h.wait(lambda: stats(pipe)["queued"] == 0 and not any((pipe.root / r).exists() for r in data), 90,
                   "every file ingested and deleted")
        finally:
            w2.stop()
    objs = h.objects(pipe.irods, pipe.collection)
    assert {r: o[0] for r, o in objs.items()} == {r: sha2(b) for r, b in data.items()}, objs
    (rel, (_, data_id, _)), = first.items()
    assert objs[rel][1] == data_id, "the object put before the kill was put again"
    assert dict(pipe.ledger.failures(pipe.name)) == {}
    assert stats(pipe)["done"] == len(data), stats(pipe)  # status counts each file once


# --- a worker SIGKILLed in an update, between setting the earlier version aside and placing the new one -------
def test_a_worker_killed_in_the_middle_of_an_update(make_pipe: Any, tmp_path: Path) -> None:
    pipe = make_pipe(versions="keep")
    f = pipe.root / "RunInfo.xml"
    v1, v2 = b"<run>one</run>", b"<run>the second run</run>"
    f.write_bytes(v1)
    with pipe:
        pipe.drain(min_done=1)
        f.write_bytes(v2)
        h.wait(lambda: stats(pipe)["queued"] == 1, 20, "the new version to be queued")
        w1 = h.worker(pipe.config_path, tmp_path / "w1.log", "advf-w1", ADVF_KILL_AFTER_SET_ASIDE="1", **FAST)
        h.wait(lambda: not w1.alive, 60, "the worker to kill itself in the middle of the update")
        assert "RunInfo.xml" not in h.objects(pipe.irods, pipe.collection)  # between the two renames
        w2 = h.worker(pipe.config_path, tmp_path / "w2.log", "advf-w2", **FAST)
        try:
            h.wait(lambda: settled(pipe, ["RunInfo.xml"]), 90, "the update to be finished")
        finally:
            w2.stop()
    objs = h.objects(pipe.irods, pipe.collection)
    assert {r: o[0] for r, o in objs.items()} == {"RunInfo.xml": sha2(v2), "RunInfo.xml.~1~": sha2(v1)}, objs
    with pipe.irods.session() as s:
        from irods.models import DataObject

        kept = {m.name for m in s.metadata.get(DataObject, f"{pipe.collection}/RunInfo.xml.~1~")}
    assert "ingestd::superseded" in kept, kept  # as an update that was not interrupted marks it
    assert dict(pipe.ledger.failures(pipe.name)) == {}


# --- the daemon SIGKILLed during a burst of 500 files, then started again -----------------------------------
@pytest.mark.slow  # 25-45 s: not in `make test`; run with -m slow
def test_the_daemon_killed_during_a_burst_and_restarted(make_pipe: Any, tmp_path: Path) -> None:
    pipe = make_pipe(rescan="2s")
    data: dict[str, bytes] = {}

    def burst(lo: int, hi: int) -> None:
        for i in range(lo, hi):
            rel = f"d{i % 7}/f{i:03d}.dat"
            (pipe.root / rel).parent.mkdir(exist_ok=True)
            data[rel] = os.urandom(64 + i)
            (pipe.root / rel).write_bytes(data[rel])

    d = h.daemon(pipe.config_path, tmp_path / "daemon.log")
    workers = [h.worker(pipe.config_path, tmp_path / f"w{i}.log", f"advf-w{i}", **FAST) for i in range(2)]
    try:
        h.wait(lambda: "running with 1 zones" in d.text(), 20, "the daemon to start")
        burst(0, 250)
        h.wait(lambda: stats(pipe)["queued"] + stats(pipe)["done"] > 50, 20, "some files queued")
        d.kill9()
        burst(250, 500)  # while no daemon runs
        d.start()
        h.wait(lambda: settled(pipe, list(data)), 180, lambda: f"all 500 files ingested ({stats(pipe)})", every=1.0)
    finally:
        d.stop()
        for w in workers:
            w.stop()
    objs = h.objects(pipe.irods, pipe.collection)
    assert {r: o[0] for r, o in objs.items()} == {r: sha2(b) for r, b in data.items()}
    assert all(o[2] == 1 for o in objs.values())
    assert dict(pipe.ledger.failures(pipe.name)) == {}
    assert stats(pipe)["done"] == len(data), stats(pipe)  # status counts each file once


# --- two workers SIGKILLed again and again while they ingest --------------------------------------------------
@pytest.mark.slow  # 25-45 s: not in `make test`; run with -m slow
def test_workers_killed_again_and_again_converge(make_pipe: Any, tmp_path: Path) -> None:
    pipe = make_pipe(rescan="2s")
    rng = random.Random(4)
    data: dict[str, bytes] = {}
    for i in range(240):
        rel = f"d{i % 5}/f{i:03d}.dat"
        (pipe.root / rel).parent.mkdir(exist_ok=True)
        data[rel] = os.urandom(rng.choice([100, 5000, 3 << 20]))
        (pipe.root / rel).write_bytes(data[rel])
    d = h.daemon(pipe.config_path, tmp_path / "daemon.log")
    workers = [h.worker(pipe.config_path, tmp_path / f"w{i}.log", f"advf-w{i}", **FAST) for i in range(2)]
    kills = 0
    try:
        end = time.monotonic() + 30
        while time.monotonic() < end:
            time.sleep(rng.uniform(0.5, 2.5))
            w = rng.choice(workers)
            w.kill9()
            kills += 1
            w.start()
        h.wait(lambda: settled(pipe, list(data)), 120, lambda: f"everything to converge ({stats(pipe)}): "
               f"{h.rq_state(pipe.r, pipe.cfg.queue.name, pipe.ledger, pipe.name, list(data))}", every=1.0)
    finally:
        d.stop()
        for w in workers:
            w.stop()
    assert kills >= 10
    objs = h.objects(pipe.irods, pipe.collection)
    assert not no_parts(objs), no_parts(objs)
    assert {r: o[0] for r, o in objs.items()} == {r: sha2(b) for r, b in data.items()}
    assert dict(pipe.ledger.failures(pipe.name)) == {}
    assert stats(pipe)["done"] == len(data), stats(pipe)  # status counts each file once


# --- a file that kills every worker that touches it --------------------------------------------------------
@pytest.mark.slow  # 25-45 s: not in `make test`; run with -m slow
def test_a_file_that_kills_every_worker_fails_alone(make_pipe: Any, tmp_path: Path) -> None:
    """Its job is abandoned again and again (the workers restarted as systemd would): the files of its batch
    that did nothing wrong still go in; only the poison file is listed failed."""
    pipe = make_pipe(rescan="2s")
    data = {f"f{i:02d}.dat": os.urandom(300 + i) for i in range(12)}
    for rel, b in data.items():
        (pipe.root / rel).write_bytes(b)
    poison = "f00.dat"
    with pipe:
        h.wait(lambda: stats(pipe)["queued"] == 12, 20, "the files to be queued")
        w = h.worker(pipe.config_path, tmp_path / "w.log", "advf-w", ADVF_KILL_ON_REL=poison, **FAST)
        try:
            deadline = time.monotonic() + 150
            while not (settled(pipe, [r for r in data if r != poison])
                       and poison in dict(pipe.ledger.failures(pipe.name))):
                assert time.monotonic() < deadline, f"no convergence: {stats(pipe)} " \
                    f"{h.rq_state(pipe.r, pipe.cfg.queue.name, pipe.ledger, pipe.name, list(data))}"
                if not w.alive:
                    w.start()  # Restart=always
                time.sleep(0.5)
        finally:
            w.stop()
    objs = h.objects(pipe.irods, pipe.collection)
    assert {r: o[0] for r, o in objs.items()} == {r: sha2(b) for r, b in data.items() if r != poison}
    assert list(dict(pipe.ledger.failures(pipe.name))) == [poison]


# a probe of the product on the real server, not of the stand-in's likeness: not run again in the second pass
pytestmark = pytest.mark.realonly
