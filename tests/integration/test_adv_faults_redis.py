"""Break-it probes, the daemon's Redis lost or away: a private redis-server per test (never the shared one),
the real daemon and worker processes, the real iRODS 5.0.2."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from irods_ingestd.ledger import DONE
from tests import adv_faults_harness as h
from tests.expect import sha2
from tests.pipeline_harness import Pipeline, pipelines
from tests.redis_harness import RedisServerProcess

FAST = {"ADVF_LOCK_TTL": "4"}


@pytest.fixture
def own_redis(tmp_path: Path) -> Any:
    server = RedisServerProcess(tmp_path / "own-redis", persistence=True)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def make_pipe(tmp_path: Path, own_redis: RedisServerProcess, irods: Any) -> Any:
    with pipelines(tmp_path, own_redis.url, irods, readable=False) as make:
        yield make


def write(pipe: Pipeline, data: dict[str, bytes], lo: int, hi: int) -> None:
    for i in range(lo, hi):
        rel = f"d{i % 3}/f{i:03d}.dat"
        (pipe.root / rel).parent.mkdir(exist_ok=True)
        data[rel] = os.urandom(200 + i)
        (pipe.root / rel).write_bytes(data[rel])


def all_done(pipe: Pipeline, rels: list[str]) -> bool:
    try:
        entries = pipe.ledger.get_many(pipe.name, rels)
        return pipe.ledger.stats(pipe.name)["queued"] == 0 and all(e is not None and e.state == DONE
                                                                   for e in entries)
    except Exception:  # noqa: BLE001 - Redis away for the moment
        return False


def avus(pipe: Pipeline, rel: str) -> dict[str, str]:
    from irods.models import DataObject

    with pipe.irods.session() as s:
        return {m.name: m.value for m in s.metadata.get(DataObject, f"{pipe.collection}/{rel}")}


def test_redis_restarted_empty_is_noticed_and_nothing_is_put_twice(make_pipe: Any, tmp_path: Path,
                                                                   own_redis: RedisServerProcess) -> None:
    own_redis.persistence = False
    own_redis.restart()
    pipe = make_pipe(rescan="1h")  # only the data loss may make it walk again
    data: dict[str, bytes] = {}
    write(pipe, data, 0, 20)
    d = h.daemon(pipe.config_path, tmp_path / "daemon.log")
    w = h.worker(pipe.config_path, tmp_path / "w.log", "advf-w", **FAST)
    try:
        h.wait(lambda: all_done(pipe, list(data)), 90, "the first 20 files")
        before = h.objects(pipe.irods, pipe.collection)
        tags = avus(pipe, "d0/f000.dat")
        own_redis.restart(kill=True)  # SIGKILL, no persistence: the ledger, the queue, the locks are gone
        assert own_redis.client().dbsize() == 0
        write(pipe, data, 20, 30)
        h.wait(lambda: all_done(pipe, list(data)), 120, lambda: f"all 30 files recorded again "
               f"({pipe.ledger.stats(pipe.name)}); daemon: {d.text()[-1500:]}")
        assert d.alive and w.alive
    finally:
        d.stop()
        w.stop()
    assert "Redis lost its data" in d.text()
    objs = h.objects(pipe.irods, pipe.collection)
    assert {r: o[0] for r, o in objs.items()} == {r: sha2(b) for r, b in data.items()}
    assert all(objs[r][1] == o[1] and objs[r][2] == 1 for r, o in before.items()), "an object was put again"
    assert avus(pipe, "d0/f000.dat") == tags
    assert dict(pipe.ledger.failures(pipe.name)) == {}
    assert pipe.ledger.stats(pipe.name)["done"] == 30


@pytest.mark.slow  # 25-45 s: not in `make test`; run with -m slow
@pytest.mark.parametrize("how", ["stopped", "frozen"])
def test_redis_away_for_20s_then_back_with_its_data(make_pipe: Any, tmp_path: Path, own_redis: RedisServerProcess,
                                                    how: str) -> None:
    """stopped: the server exits (SIGTERM) and starts again from its append-only file; frozen: SIGSTOP, then
    SIGCONT (connections hang instead of being refused)."""
    pipe = make_pipe(rescan="5s")
    data: dict[str, bytes] = {}
    write(pipe, data, 0, 30)
    d = h.daemon(pipe.config_path, tmp_path / "daemon.log")
    w = h.worker(pipe.config_path, tmp_path / "w.log", "advf-w", **FAST)
    try:
        h.wait(lambda: pipe.ledger.stats(pipe.name)["done"] >= 5, 60, "some files ingested")
        assert own_redis.proc is not None
        if how == "stopped":
            own_redis.stop()  # SIGTERM; its append-only file keeps every write
        else:
            own_redis.proc.send_signal(signal.SIGSTOP)
        try:
            write(pipe, data, 30, 50)  # files arrive while Redis is away
            time.sleep(20)
            assert d.alive, "the daemon died while Redis was away:\n" + d.text()[-3000:]
            assert w.alive, "the worker died while Redis was away:\n" + w.text()[-3000:]
        finally:
            if how == "stopped":
                own_redis.start()
            else:
                own_redis.proc.send_signal(signal.SIGCONT)
        h.wait(lambda: all_done(pipe, list(data)), 120, lambda: f"all 50 files ({pipe.ledger.stats(pipe.name)}): "
               f"{h.rq_state(pipe.r, pipe.cfg.queue.name, pipe.ledger, pipe.name, list(data))}")
    finally:
        d.stop()
        w.stop()
    objs = h.objects(pipe.irods, pipe.collection)
    assert {r: o[0] for r, o in objs.items()} == {r: sha2(b) for r, b in data.items()}
    assert all(o[2] == 1 for o in objs.values())
    assert dict(pipe.ledger.failures(pipe.name)) == {}
    assert pipe.ledger.stats(pipe.name)["done"] == 50


def test_redis_restarted_empty_in_the_middle_of_a_burst(make_pipe: Any, tmp_path: Path,
                                                       own_redis: RedisServerProcess) -> None:
    """The ledger, the queue and the jobs in flight vanish while a worker ingests: the daemon walks again,
    every file goes in once (those already in iRODS are recorded without a second copy)."""
    own_redis.persistence = False
    own_redis.restart()
    pipe = make_pipe(rescan="1h")
    data: dict[str, bytes] = {}
    write(pipe, data, 0, 120)
    d = h.daemon(pipe.config_path, tmp_path / "daemon.log")
    w = h.worker(pipe.config_path, tmp_path / "w.log", "advf-w", **FAST)
    try:
        h.wait(lambda: pipe.ledger.stats(pipe.name)["done"] >= 30, 60, "some files ingested")
        before = h.objects(pipe.irods, pipe.collection)
        own_redis.restart(kill=True)
        h.wait(lambda: all_done(pipe, list(data)), 150, lambda: f"all 120 files recorded "
               f"({pipe.ledger.stats(pipe.name)}): "
               f"{h.rq_state(pipe.r, pipe.cfg.queue.name, pipe.ledger, pipe.name, list(data))}")
    finally:
        d.stop()
        w.stop()
    objs = h.objects(pipe.irods, pipe.collection)
    assert {r: o[0] for r, o in objs.items()} == {r: sha2(b) for r, b in data.items()}
    assert all(o[2] == 1 for o in objs.values())
    assert all(objs[r][1] == o[1] for r, o in before.items() if r in objs), "an object was put again"
    assert dict(pipe.ledger.failures(pipe.name)) == {}


@pytest.mark.parametrize("after", ["delete", "move"])
def test_redis_restarted_empty_while_after_actions_wait(make_pipe: Any, tmp_path: Path,
                                                       own_redis: RedisServerProcess, after: str) -> None:
    """Verified files wait for after_hold before their delete/move when Redis loses its data (the deferred
    actions with it): the walk finds the files again, they are found already in iRODS, and the action runs;
    no second copy, nothing left behind."""
    own_redis.persistence = False
    own_redis.restart()
    zone: dict[str, Any] = {"rescan": "1h", "after": after, "after_hold": "4s"}
    if after == "move":
        zone["move_to"] = str(tmp_path / "done")
    pipe = make_pipe(**zone)
    data: dict[str, bytes] = {}
    write(pipe, data, 0, 6)
    d = h.daemon(pipe.config_path, tmp_path / "daemon.log")
    w = h.worker(pipe.config_path, tmp_path / "w.log", "advf-w", **FAST)
    try:
        h.wait(lambda: pipe.ledger.stats(pipe.name)["done"] == 6, 60, "the files ingested")
        before = h.objects(pipe.irods, pipe.collection)
        assert all((pipe.root / r).exists() for r in data)  # still held by after_hold
        own_redis.restart(kill=True)
        h.wait(lambda: not any((pipe.root / r).exists() for r in data), 90,
               lambda: f"the landing files to go ({pipe.ledger.stats(pipe.name)}); daemon: {d.text()[-1500:]}")
    finally:
        d.stop()
        w.stop()
    objs = h.objects(pipe.irods, pipe.collection)
    assert {r: o[0] for r, o in objs.items()} == {r: sha2(b) for r, b in data.items()}
    assert all(objs[r][1] == o[1] and objs[r][2] == 1 for r, o in before.items()), "an object was put again"
    if after == "move":
        assert {r: (tmp_path / "done" / r).read_bytes() for r in data} == data
    assert dict(pipe.ledger.failures(pipe.name)) == {}


def test_redis_refusing_writes_when_full(make_pipe: Any, tmp_path: Path, own_redis: RedisServerProcess) -> None:
    """maxmemory reached with noeviction: every write is refused (OOM) for a while; the daemon and the worker
    live through it, and once Redis takes writes again every file goes in once."""
    pipe = make_pipe(rescan="2s")
    data: dict[str, bytes] = {}
    write(pipe, data, 0, 20)
    d = h.daemon(pipe.config_path, tmp_path / "daemon.log")
    w = h.worker(pipe.config_path, tmp_path / "w.log", "advf-w", **FAST)
    r = own_redis.client()
    try:
        h.wait(lambda: all_done(pipe, list(data)), 60, "the first files")
        used = int(r.info("memory")["used_memory"])
        r.config_set("maxmemory-policy", "noeviction")
        r.config_set("maxmemory", str(used))  # full now: every write that needs memory is refused
        write(pipe, data, 20, 60)
        time.sleep(10)
        assert d.alive, "the daemon died of a full Redis:\n" + d.text()[-3000:]
        assert w.alive, "the worker died of a full Redis:\n" + w.text()[-3000:]
        r.config_set("maxmemory", "0")
        h.wait(lambda: all_done(pipe, list(data)), 120, lambda: f"all 60 files ({pipe.ledger.stats(pipe.name)}): "
               f"{h.rq_state(pipe.r, pipe.cfg.queue.name, pipe.ledger, pipe.name, list(data))}")
    finally:
        d.stop()
        w.stop()
    assert "Redis refuses the daemon's commands" in d.text() and "maxmemory" in d.text(), d.text()[-2000:]
    assert "Redis is not answering" not in d.text()  # it answered all along
    objs = h.objects(pipe.irods, pipe.collection)
    assert {r_: o[0] for r_, o in objs.items()} == {r_: sha2(b) for r_, b in data.items()}
    assert all(o[2] == 1 for o in objs.values())
    assert dict(pipe.ledger.failures(pipe.name)) == {}


# a probe of the product on the real server, not of the stand-in's likeness: not run again in the second pass
pytestmark = pytest.mark.realonly
