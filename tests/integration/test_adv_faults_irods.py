"""Break-it probes, the iRODS side: someone else changing the zone's collection or objects while the daemon
runs, a wrong password, a server that refuses connections; against the real iRODS 5.0.2 (real daemon, real
RQ workers, real Redis)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from irods_ingestd.actions import status
from tests import adv_faults_harness as h
from tests.expect import sha2
from tests.pipeline_harness import Pipeline, pipelines, until
from tests.redis_harness import free_port

FAST = {"ADVF_LOCK_TTL": "4"}


@pytest.fixture
def make_pipe(tmp_path: Path, redis_server: Any, redis_conn: Any, irods: Any) -> Any:
    with pipelines(tmp_path, redis_server.url, irods, readable=False) as make:
        yield make


def checksums(pipe: Pipeline) -> dict[str, str]:
    return {r: o[0] for r, o in h.objects(pipe.irods, pipe.collection).items()}


def cli_json(pipe: Pipeline, *args: str) -> Any:
    r = subprocess.run(h.cli(pipe.config_path, *args), capture_output=True, text=True, cwd=h.ROOT, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


# --- the zone's whole collection removed by someone while the daemon runs -------------------------------------
def test_the_zone_collection_removed_while_running_is_made_again(make_pipe: Any) -> None:
    pipe = make_pipe()
    with pipe:
        (pipe.root / "sub").mkdir()
        (pipe.root / "a.dat").write_bytes(b"a")
        (pipe.root / "sub" / "b.dat").write_bytes(b"b")
        pipe.drain(min_done=2)
        with pipe.irods.session() as s:
            s.collections.remove(pipe.collection, recurse=True, force=True)
        (pipe.root / "c.dat").write_bytes(b"c")
        (pipe.root / "sub" / "d.dat").write_bytes(b"d")
        pipe.drain(min_done=4)
    assert checksums(pipe) == {"c.dat": sha2(b"c"), "sub/d.dat": sha2(b"d")}
    assert dict(pipe.ledger.failures("z")) == {}


# --- an object ingested, then removed from iRODS by someone -----------------------------------------------
def test_an_ingested_object_removed_by_someone(make_pipe: Any) -> None:
    """What ingestd does: the ledger holds the file as ingested at its size and mtime, so the same landing
    file is not put again (nothing watches iRODS for deletions); a new version of it (or `touch`) is.
    What it must not do: say the file is in iRODS when it is not. `status` counts what was ingested (a
    history, not a census); `plan` looks at iRODS and must not call the missing object present."""
    pipe = make_pipe(rescan="1s")
    f = pipe.root / "x.dat"
    with pipe:
        f.write_bytes(b"first")
        pipe.drain(min_done=1)
        with pipe.irods.session() as s:
            s.data_objects.unlink(f"{pipe.collection}/x.dat", force=True)
        for _ in range(4):  # several rescans and worker runs
            time.sleep(0.5)
            pipe.work()
        assert checksums(pipe) == {}  # not put back by itself
        plan = cli_json(pipe, "plan", "--json")
        (entry,) = [e for e in plan["zones"]["z"]["files"] if e["path"] == "x.dat"]
        assert entry["action"] == "ingested", entry
        assert entry["irods"] != "present", entry
        f.write_bytes(b"second")  # a new version goes in
        until(pipe, lambda: checksums(pipe) == {"x.dat": sha2(b"second")}, what="the new version")
    assert dict(pipe.ledger.failures("z")) == {}


# --- someone else puts an object under the target name before the worker ----------------------------------
def test_an_object_put_by_someone_else_first_is_a_conflict(make_pipe: Any, tmp_path: Path) -> None:
    pipe = make_pipe(after="delete", after_hold="0s")
    path = pipe.root / "run1" / "data.bin"
    path.parent.mkdir()
    path.write_bytes(b"the instrument's bytes" * 50)
    other = tmp_path / "other.bin"
    other.write_bytes(b"someone else's bytes!!" * 50)  # the same size: only the checksum tells them apart
    with pipe:
        from tests.daemon_harness import wait_for

        assert wait_for(lambda: pipe.ledger.stats("z")["queued"] == 1, timeout=15)
        with pipe.irods.session() as s:
            s.collections.create(f"{pipe.collection}/run1", recurse=True)
            s.data_objects.put(str(other), f"{pipe.collection}/run1/data.bin")
        pipe.drain()
    assert path.read_bytes() == b"the instrument's bytes" * 50  # the landing file is kept
    assert list(checksums(pipe)) == ["run1/data.bin"]
    with pipe.irods.session() as s, s.data_objects.open(f"{pipe.collection}/run1/data.bin", "r") as o:
        assert o.read() == other.read_bytes()  # theirs, untouched
    failures = dict(pipe.ledger.failures("z"))
    assert list(failures) == ["run1/data.bin"] and failures["run1/data.bin"]["kind"] == "conflict", failures
    why = failures["run1/data.bin"]["reason"]
    assert "conflict" in why and "not overwritten" in why, why
    z = status.gather(pipe.cfg)["zones"]["z"]
    assert z["failed"] == 1 and z["failed_files"][0]["path"] == "run1/data.bin", z


# --- the worker cannot reach or log in to iRODS -------------------------------------------------------------
def _broken_worker(pipe: Pipeline, tmp_path: Path, what: str) -> tuple[str, dict[str, Any]]:
    """Run a worker process for ~12 s against the broken iRODS: its log, and the zone's status."""
    for i in range(3):
        (pipe.root / f"f{i}.dat").write_bytes(os.urandom(100 + i))
    with pipe:
        from tests.daemon_harness import wait_for

        assert wait_for(lambda: pipe.ledger.stats("z")["queued"] == 3, timeout=15)
        w = h.worker(pipe.config_path, tmp_path / f"{what}.log", f"advf-{what}", **FAST)
        try:
            time.sleep(12)
            assert w.alive, w.text()[-3000:]
        finally:
            w.stop()
        z = status.gather(pipe.cfg)["zones"]["z"]
    return w.text(), z


def _then_fixed(pipe: Pipeline) -> None:
    with pipe:
        pipe.drain(min_done=3, timeout=90)
    assert len(checksums(pipe)) == 3
    assert dict(pipe.ledger.failures("z")) == {}


def test_a_wrong_irods_password(make_pipe: Any, tmp_path: Path) -> None:
    pipe = make_pipe()
    pw = tmp_path / "irods-password"
    pw.write_text("not-the-password")
    text, z = _broken_worker(pipe, tmp_path, "badpw")
    assert dict(pipe.ledger.failures("z")) == {}, "a wrong password failed files for good"
    assert z["failed"] == 0 and z["retrying"] >= 1, z  # status says the files are being retried
    errors = [ln for ln in text.splitlines() if "CAT_INVALID_AUTHENTICATION" in ln or "password" in ln.lower()]
    assert errors, text[-3000:]  # a clear error
    assert len(text.splitlines()) < 200, f"a busy loop: {len(text.splitlines())} log lines in 12 s"
    assert "not-the-password" not in text
    pw.write_text(pipe.irods.password)
    _then_fixed(pipe)


def test_an_irods_server_refusing_connections(make_pipe: Any, tmp_path: Path) -> None:
    pipe = make_pipe()
    env = tmp_path / "irods_environment.json"
    good = env.read_text()
    bad = json.loads(good)
    bad["irods_port"] = free_port()  # nothing listens there
    env.write_text(json.dumps(bad))
    text, z = _broken_worker(pipe, tmp_path, "closed")
    assert dict(pipe.ledger.failures("z")) == {}, "an unreachable server failed files for good"
    assert z["failed"] == 0, z
    assert f"{bad['irods_port']}" in text or "connect" in text.lower(), text[-3000:]
    assert len(text.splitlines()) < 200, f"a busy loop: {len(text.splitlines())} log lines in 12 s"
    env.write_text(good)
    _then_fixed(pipe)


def test_an_irods_server_that_accepts_and_never_answers(make_pipe: Any, tmp_path: Path) -> None:
    """A hung server (the port listens, nothing ever answers): each try ends at connection_timeout, the files
    wait, none fails for good, and the worker is not stuck for ever."""
    import socket

    pipe = make_pipe()
    text = pipe.config_path.read_text()
    pipe.config_path.write_text(text.replace("[queue]", 'connection_timeout = "1s"\n[queue]', 1))
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(64)  # never accepted: the kernel completes the handshake, nobody reads
    env = tmp_path / "irods_environment.json"
    good = env.read_text()
    bad = json.loads(good)
    bad["irods_port"] = hole.getsockname()[1]
    env.write_text(json.dumps(bad))
    try:
        text, z = _broken_worker(pipe, tmp_path, "hung")
    finally:
        hole.close()
    assert dict(pipe.ledger.failures("z")) == {}, "a hung server failed files for good"
    assert z["failed"] == 0, z
    assert "iRODS unavailable, queued again" in text, text[-3000:]
    env.write_text(good)
    _then_fixed(pipe)



# --- the network drops the connection in the middle of a put ---------------------------------------------------
def test_a_connection_cut_in_the_middle_of_a_put(make_pipe: Any, tmp_path: Path, caplog: Any) -> None:
    pipe = make_pipe()
    env = tmp_path / "irods_environment.json"
    good = json.loads(env.read_text())
    proxy = h.CuttingProxy((good["irods_host"], int(good["irods_port"])), cut_after=20 << 20)
    env.write_text(json.dumps({**good, "irods_port": proxy.port}))
    big = pipe.root / "big.bin"
    data = os.urandom(64 << 20)
    big.write_bytes(data)
    try:
        with pipe:
            pipe.drain(min_done=1, timeout=120)
    finally:
        proxy.close()
    assert proxy.cuts == 1
    assert "transient error" in caplog.text and "big.bin" in caplog.text
    assert h.objects(pipe.irods, pipe.collection).keys() == {"big.bin"}  # no temporary object left
    assert checksums(pipe) == {"big.bin": sha2(data)}
    assert dict(pipe.ledger.failures("z")) == {}


# --- a register zone's worker loses iRODS between its first file and its first bulk batch ---------------------
def test_an_outage_before_a_register_zones_first_bulk_batch(tmp_path: Path, redis_server: Any, redis_conn: Any,
                                                           irods: Any) -> None:
    """A long-running worker learned the server's hash scheme from one file; iRODS goes away before its first
    batch of several files (which asks whether it is a rodsadmin, to register in bulk)."""
    with pipelines(tmp_path, redis_server.url, irods, readable=True, mode="register") as make:
        pipe = make()
        env = tmp_path / "irods_environment.json"
        good = json.loads(env.read_text())
        proxy = h.CuttingProxy((good["irods_host"], int(good["irods_port"])), cut_after=1 << 60)
        env.write_text(json.dumps({**good, "irods_port": proxy.port}))
        w = h.worker(pipe.config_path, tmp_path / "w.log", "advf-w", **FAST)
        try:
            with pipe:
                (pipe.root / "first.dat").write_bytes(b"the first file: the worker learns the hash scheme")
                h.wait(lambda: pipe.ledger.stats("z")["done"] == 1, 30, "the first file")
                proxy.close()  # the port refuses from now on
                for i in range(6):
                    (pipe.root / f"f{i}.dat").write_bytes(os.urandom(100 + i))
                time.sleep(12)  # the daemon queues them, the worker tries, the daemon reaps what failed
                assert dict(pipe.ledger.failures("z")) == {}, "an outage failed a register zone's files for good:" \
                    + w.text()[-3000:]
                env.write_text(json.dumps(good))  # the server is back (each new session reads the file)
                h.wait(lambda: pipe.ledger.stats("z")["done"] == 7 and pipe.ledger.stats("z")["queued"] == 0, 60,
                       lambda: f"every file registered ({pipe.ledger.stats('z')})")
        finally:
            proxy.close()
            w.stop()
        objs = h.objects(irods, pipe.collection)
        assert sorted(objs) == sorted(["first.dat", *(f"f{i}.dat" for i in range(6))]), objs
        assert dict(pipe.ledger.failures("z")) == {}


# a probe of the product on the real server, not of the stand-in's likeness: not run again in the second pass
pytestmark = pytest.mark.realonly
