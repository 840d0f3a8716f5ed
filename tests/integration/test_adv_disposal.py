"""Session 5 probe, ownership, replicas and disposal, against the real iRODS 5.0.2, through the pipeline (daemon
thread, real RQ workers in bursts, real Redis):

- acl names: a user removed after start (per-object and inherit; a long-lived worker too), made again and
  `retry`; a rule on the service account itself (read/null); the local zone spelled out (read:grp#tempZone);
- replicas: a replicate_to resource removed, down, or whose vault the server cannot write; a second replica
  trimmed, stale, or of other bytes; a stale replica already on the replicate_to resource; a replication
  resource with min_replicas = 2; a rodsuser replicating new versions (keep, replace);
- disposal: an object removed or overwritten in iRODS during after_hold; move_to not writable (chattr +i), full
  (a small tmpfs), on another filesystem with odd names already taken there, holding a directory or a dangling
  link of the name, or with a directory that leads back into the zone (also for a run moved whole);
- retry: after the cause was fixed (each file once), of a file deleted meanwhile, of a zone that does not exist;
- a rodsuser whose write on the collection is revoked mid-run (files fail clearly, nothing deleted, retry).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import irods.exception as iex
import pytest
from irods.access import iRODSAccess

from irods_ingestd.actions import status
from irods_ingestd.ingest import access as access_mod
from irods_ingestd.ingest import after_run
from irods_ingestd.ingest import replicas as replicas_mod
from tests.access_server import AsUser, object_acls, remove_all, replicas
from tests.expect import sha2
from tests.integration.test_adv_ops_cli import cli
from tests.landing import server_readable
from tests.pipeline_harness import Pipeline, pipelines

pytestmark = pytest.mark.realonly

_PID = os.getpid()
DUSER = f"ingestd_disposal_user_{_PID}"  # named after this probe: nobody else removes or makes it
DRESC = f"ingestd_disposal_resc_{_PID}"
DVAULT = Path(f"/var/lib/irods/ingestd_disposal_resc_{_PID}_vault")


def _make_user(s: Any, password: str = "") -> None:
    try:
        s.users.get(DUSER)
    except iex.UserDoesNotExist:
        s.users.create(DUSER, "rodsuser")
    if password:
        s.users.modify(DUSER, "password", password)


def _make_resc(s: Any) -> None:
    try:
        s.resources.get(DRESC)
    except iex.ResourceDoesNotExist:
        s.resources.create(DRESC, "unixfilesystem", host=socket.gethostname(), path=str(DVAULT))


@pytest.fixture(scope="module")
def server(irods_server: Any) -> Iterator[Any]:
    if not getattr(irods_server, "real", False):
        pytest.skip("needs the real iRODS server")
    yield irods_server
    with irods_server.session() as s:
        for remove in (lambda: s.resources.remove(DRESC), lambda: s.users.remove(DUSER)):
            with contextlib.suppress(Exception):
                remove()
    shutil.rmtree(DVAULT, ignore_errors=True)


@pytest.fixture
def make_pipe(tmp_path: Path, redis_server: Any, redis_conn: Any, server: Any,
              monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setattr(replicas_mod, "HOLD_RETRY", 0.5)  # a held file is looked at again soon
    with pipelines(tmp_path, redis_server.url, server, remove=partial(remove_all, server)) as make:
        yield make


def failures(pipe: Pipeline) -> dict[str, str]:
    return {rel: info["reason"] for rel, info in pipe.ledger.failures("z")}


def held(pipe: Pipeline) -> dict[str, Any]:
    z = status.gather(pipe.cfg)["zones"]["z"]
    return {"held": z["held"], **{f["path"]: f["reason"] for f in z["held_files"]}}


def rels(pipe: Pipeline) -> set[str]:
    return {p[len(pipe.collection) + 1:] for p in pipe.objects()}


def work_due(pipe: Pipeline) -> None:
    """A worker burst, the due after-actions handed to it first (the daemon does that every 5 s)."""
    from rq import Queue

    from irods_ingestd import after_jobs

    d = pipe.daemon.daemon if pipe.daemon else None
    if d is not None:
        after_jobs.enqueue_due(pipe.r, pipe.cfg.redis.prefix, Queue(pipe.cfg.queue.name, connection=pipe.r),
                               [zs.spec for zs in list(d.zones.values())])
    pipe.work()


def until(pipe: Pipeline, cond: Any, timeout: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what or cond}"
        work_due(pipe)
        time.sleep(0.2)


def spin(pipe: Pipeline, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        work_due(pipe)
        time.sleep(0.2)


# --- acl names that go away -------------------------------------------------------------------------------

@pytest.mark.parametrize("inherit", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_an_acl_user_removed_after_start_fails_the_files_and_retry_ingests_them_once(
        make_pipe: Any, server: Any, inherit: bool) -> None:
    with server.session() as s:
        _make_user(s)
    pipe = make_pipe(acl=[f"read:{DUSER}"], inherit=inherit, after="delete", after_hold="0s")
    a, b = os.urandom(1000), os.urandom(1200)
    with pipe:
        (pipe.root / "a.dat").write_bytes(a)
        until(pipe, lambda: not (pipe.root / "a.dat").exists(), what="a.dat ingested and deleted")
        with server.session() as s:
            s.users.remove(DUSER)
        (pipe.root / "b.dat").write_bytes(b)
        until(pipe, lambda: "b.dat" in failures(pipe), timeout=30, what="b.dat to fail")
        why = failures(pipe)["b.dat"]
        assert f"there is no iRODS user or group named {DUSER}" in why and "zone 'z'" in why, why
        assert (pipe.root / "b.dat").read_bytes() == b, "a failed file left the landing zone"
        assert rels(pipe) == {"a.dat"}, "an object landed without its ACLs (or a temporary copy was left)"
        with server.session() as s:
            _make_user(s)
        r = cli(pipe.config_path, "retry")
        assert r.returncode == 0 and "1 failed files queued again" in r.stdout, r.stdout + r.stderr
        until(pipe, lambda: not (pipe.root / "b.dat").exists(), what="b.dat ingested and deleted after retry")
    assert failures(pipe) == {}
    objs = pipe.objects()
    assert sorted(objs) == [f"{pipe.collection}/a.dat", f"{pipe.collection}/b.dat"], objs
    assert object_acls(server, f"{pipe.collection}/b.dat").get(DUSER) == "read_object"
    from irods.models import DataObject
    assert objs[f"{pipe.collection}/b.dat"][DataObject.checksum] == sha2(b)


# --- replicate_to resources that go away or go down -------------------------------------------------------

@pytest.mark.parametrize("fault", [pytest.param("removed", marks=pytest.mark.slow), "down"])
def test_a_replicate_to_resource_removed_or_down_holds_the_file_until_it_is_back(
        make_pipe: Any, server: Any, tmp_path: Path, fault: str) -> None:
    with server.session() as s:
        _make_resc(s)
    pipe = make_pipe(after="move", move_to=str(tmp_path / "done"), after_hold="0s", replicate_to=DRESC)
    d = os.urandom(3000)
    obj = f"{pipe.collection}/a.dat"
    try:
        with pipe:
            with server.session() as s:
                if fault == "removed":
                    s.resources.remove(DRESC)
                else:
                    s.resources.modify(DRESC, "status", "down")
            (pipe.root / "a.dat").write_bytes(d)
            until(pipe, lambda: held(pipe)["held"] == 1, what="the file to be held")
            spin(pipe, 2)
            assert (pipe.root / "a.dat").read_bytes() == d, "moved without its second replica"
            why = held(pipe)["a.dat"]
            code = "SYS_RESC_DOES_NOT_EXIST" if fault == "removed" else "SYS_REPLICA_INACCESSIBLE"
            assert why.startswith(f"held: replicas of {obj} not verified: {code}") and DRESC in why, why
            with server.session() as s:
                if fault == "removed":
                    _make_resc(s)
                else:
                    s.resources.modify(DRESC, "status", "up")
            until(pipe, lambda: not (pipe.root / "a.dat").exists(), what="the file to go once the resource is back")
    finally:
        with server.session() as s, contextlib.suppress(Exception):
            s.resources.modify(DRESC, "status", "up")
    assert (tmp_path / "done" / "a.dat").read_bytes() == d
    assert replicas(server, obj) == [("demoResc", "1", sha2(d)), (DRESC, "1", sha2(d))]
    assert held(pipe) == {"held": 0} and failures(pipe) == {}


# --- a second replica that goes away or goes stale before the delete -------------------------------------

@pytest.mark.parametrize("fault", [pytest.param("trimmed", marks=pytest.mark.slow), "stale"])
def test_a_second_replica_trimmed_or_stale_before_the_delete_holds_the_file(
        make_pipe: Any, server: Any, fault: str) -> None:
    with server.session() as s:
        _make_resc(s)
    pipe = make_pipe(after="delete", after_hold="3s", min_replicas=2)
    d = os.urandom(2000)
    obj = f"{pipe.collection}/a.dat"
    f = pipe.root / "a.dat"
    with pipe:
        f.write_bytes(d)
        until(pipe, lambda: pipe.ledger.stats("z")["done"] == 1, what="a.dat ingested")
        with server.session() as s:  # someone replicates it, then it goes (trimmed) or goes stale
            s.data_objects.replicate(obj, resource=DRESC)
            if fault == "trimmed":
                s.data_objects.trim(obj, replNum=1, copies=1)
            else:
                s.data_objects.modDataObjMeta({"objPath": obj, "replNum": 1}, {"replStatus": "0"}, ADMIN_KW="")
        until(pipe, lambda: held(pipe)["held"] == 1, what="the file to be held")
        spin(pipe, 1)
        assert f.read_bytes() == d, "deleted with one good replica"
        assert "1 of min_replicas = 2" in held(pipe)["a.dat"], held(pipe)
        with server.session() as s:  # the replica is made good again: then it goes
            if fault == "trimmed":
                s.data_objects.replicate(obj, resource=DRESC)
            else:
                s.data_objects.modDataObjMeta({"objPath": obj, "replNum": 1}, {"replStatus": "1"}, ADMIN_KW="")
        until(pipe, lambda: not f.exists(), what="the file to go")
    assert [(r, st) for r, st, _ in replicas(server, obj)] == [("demoResc", "1"), (DRESC, "1")]
    assert held(pipe) == {"held": 0} and failures(pipe) == {}


@pytest.mark.slow
def test_replicate_to_onto_a_resource_holding_a_stale_replica(make_pipe: Any, server: Any, tmp_path: Path) -> None:
    """The replica on the replicate_to resource exists but is stale (left by someone): the worker must bring it
    up to date (or hold the file), never count it and never fail the file."""
    with server.session() as s:
        _make_resc(s)
    pipe = make_pipe(after="delete", after_hold="3s", replicate_to=DRESC)
    d = os.urandom(2500)
    obj = f"{pipe.collection}/a.dat"
    f = pipe.root / "a.dat"
    with pipe:
        f.write_bytes(d)
        until(pipe, lambda: pipe.ledger.stats("z")["done"] == 1, what="a.dat ingested")
        with server.session() as s:
            s.data_objects.replicate(obj, resource=DRESC)
            s.data_objects.modDataObjMeta({"objPath": obj, "replNum": 1}, {"replStatus": "0"}, ADMIN_KW="")
        until(pipe, lambda: not f.exists() or held(pipe)["held"] == 1, what="the file to go or be held")
        spin(pipe, 1)
        if f.exists():
            pytest.fail(f"held with a stale replica on the replicate_to resource: {held(pipe)}")
    assert replicas(server, obj) == [("demoResc", "1", sha2(d)), (DRESC, "1", sha2(d))]
    assert failures(pipe) == {}


# --- move_to that cannot take the file, or already holds its name ------------------------------------------

def test_a_move_to_that_is_not_writable_keeps_the_file_and_moves_it_once_fixed(
        make_pipe: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """Broke: a move that failed (an OSError) dropped the deferred action, so the file stayed in the landing
    zone for good (status did not list it, nothing tried again) once the operator fixed move_to."""
    monkeypatch.setattr(after_run, "RETRY_FAILED", 0.5)
    done = tmp_path / "done"
    done.mkdir()
    pipe = make_pipe(after="move", move_to=str(done), after_hold="0s")
    d = os.urandom(1500)
    f = pipe.root / "a.dat"
    subprocess.run(["chattr", "+i", str(done)], check=True)  # not even root may create anything in it
    try:
        with caplog.at_level(logging.WARNING, logger="irods_ingestd"), pipe:
            f.write_bytes(d)
            until(pipe, lambda: pipe.ledger.stats("z")["done"] == 1, what="a.dat ingested")
            spin(pipe, 1)
            assert f.read_bytes() == d
            said = [r.getMessage() for r in caplog.records if "a.dat" in r.getMessage()]
            assert any(f"after = move failed: Operation not permitted ({done}/" in m for m in said), said
            assert status.gather(pipe.cfg)["zones"]["z"]["after_pending"] == 1  # status: awaiting move 1
            subprocess.run(["chattr", "-i", str(done)], check=True)
            until(pipe, lambda: not f.exists(), timeout=30, what="the file moved once move_to is writable")
    finally:
        subprocess.run(["chattr", "-i", str(done)], check=False)
    assert (done / "a.dat").read_bytes() == d
    assert rels(pipe) == {"a.dat"}


ODD = ["sp ace.dat", "new\nline.dat", "caf\u00e9.dat", "-dash.dat", "q'uo\"te.dat"]


def test_move_across_filesystems_of_odd_names_onto_names_already_taken(make_pipe: Any) -> None:
    """move_to on another filesystem (tmpfs): the copy is checked, and a name already there (other bytes) is
    kept; the moved file gets name.~1~."""
    shm = Path("/dev/shm") / f"ingestd-disposal-{_PID}-{secrets.token_hex(3)}"
    assert os.stat("/dev/shm").st_dev != os.stat(Path(__file__)).st_dev
    try:
        pipe = make_pipe(after="move", move_to=str(shm), after_hold="0s")
        (shm / "sub").mkdir(parents=True)
        data = {f"sub/{n}": os.urandom(300 + i) for i, n in enumerate(ODD)}
        for rel in data:
            (shm / rel).write_bytes(b"already here " + rel.encode())
        with pipe:
            for rel, b in data.items():
                (pipe.root / rel).parent.mkdir(exist_ok=True)
                (pipe.root / rel).write_bytes(b)
            until(pipe, lambda: not any((pipe.root / rel).exists() for rel in data), what="the files moved")
        for rel, b in data.items():
            assert (shm / rel).read_bytes() == b"already here " + rel.encode(), rel
            assert (shm / f"{rel}.~1~").read_bytes() == b, rel
        assert not [p for p in (shm / "sub").iterdir() if ".ingestd-" in p.name]
        assert len(rels(pipe)) == len(ODD) and failures(pipe) == {}
    finally:
        shutil.rmtree(shm, ignore_errors=True)


# --- retry ---------------------------------------------------------------------------------------------------

def test_retry_of_a_failed_file_deleted_meanwhile_leaves_nothing_queued(make_pipe: Any) -> None:
    pipe = make_pipe(acl=["read:ingestd_disposal_nosuch"], after="delete", after_hold="0s")
    with pipe:
        for n in ("a.dat", "b.dat"):
            (pipe.root / n).write_bytes(os.urandom(100))
        until(pipe, lambda: len(failures(pipe)) == 2, what="both to fail")
        (pipe.root / "a.dat").unlink()
        r = cli(pipe.config_path, "retry")
        assert r.returncode == 0 and "2 failed files queued again" in r.stdout, r.stdout + r.stderr
        until(pipe, lambda: set(failures(pipe)) == {"b.dat"} and pipe.ledger.stats("z")["queued"] == 0,
              what="b.dat to fail again and a.dat to be forgotten")
        spin(pipe, 1)
    s = pipe.ledger.stats("z")
    assert (s["queued"], s["failed"]) == (0, 1), s
    assert (pipe.root / "b.dat").exists() and not pipe.objects()


def test_retry_of_a_zone_that_does_not_exist_says_so(make_pipe: Any) -> None:
    pipe = make_pipe()
    r = cli(pipe.config_path, "retry", "--zone", "nosuch")
    assert r.returncode == 2 and "no zone named nosuch" in r.stderr, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr


# --- a rodsuser whose rights are taken away mid-run ------------------------------------------------------

def test_a_rodsuser_whose_write_is_revoked_mid_run_keeps_the_files_and_retry_ingests_them(
        tmp_path: Path, redis_server: Any, redis_conn: Any, server: Any) -> None:
    password = secrets.token_hex(8)
    with server.session() as s:
        _make_user(s, password)
    user = AsUser(server, DUSER, password)
    with pipelines(tmp_path, redis_server.url, user, remove=partial(remove_all, server)) as make:
        pipe = make(after="delete", after_hold="1s")  # deferred: the object is looked up as the user first
        with server.session() as s:
            s.collections.create(pipe.collection, recurse=True)
            s.acls.set(iRODSAccess("own", pipe.collection, DUSER))
        server_readable(pipe.root)
        with pipe:
            (pipe.root / "a.dat").write_bytes(b"first")
            until(pipe, lambda: not (pipe.root / "a.dat").exists(), what="a.dat ingested and deleted")
            with server.session() as s:
                s.acls.set(iRODSAccess("read", pipe.collection, DUSER))
            data = {f"r/f{i}.dat": os.urandom(200 + i) for i in range(3)}
            for rel, b in data.items():
                (pipe.root / rel).parent.mkdir(exist_ok=True)
                (pipe.root / rel).write_bytes(b)
            until(pipe, lambda: len(failures(pipe)) == 3, what="the files to fail")
            for rel, why in failures(pipe).items():
                assert "CAT_NO_ACCESS_PERMISSION" in why, (rel, why)
            assert all((pipe.root / rel).read_bytes() == b for rel, b in data.items()), "a failed file went"
            assert rels(pipe) == {"a.dat"}
            with server.session() as s:
                s.acls.set(iRODSAccess("own", pipe.collection, DUSER))
            r = cli(pipe.config_path, "retry")
            assert r.returncode == 0 and "3 failed files queued again" in r.stdout, r.stdout + r.stderr
            until(pipe, lambda: not any((pipe.root / rel).exists() for rel in data), what="the files after retry")
        assert failures(pipe) == {}
        from irods.models import DataObject
        objs = pipe.objects()
        assert {k[len(pipe.collection) + 1:]: v[DataObject.checksum] for k, v in objs.items()} == \
            {"a.dat": sha2(b"first"), **{rel: sha2(b) for rel, b in data.items()}}


def work_with(pipe: Pipeline, ctx: Any) -> int:
    """Run the queued ingest jobs in this thread with one long-lived worker context (a worker process that runs
    for days, unlike the pipeline's bursts, which start a new context each)."""
    from rq import Queue

    from irods_ingestd import ingest
    from irods_ingestd.job import Batch

    q = Queue(pipe.cfg.queue.name, connection=pipe.r)
    n = 0
    for job in q.get_jobs():
        ingest.ingest_batch(ctx, Batch.from_record(job.args[0]))
        q.remove(job)
        job.delete()
        n += 1
    return n


@pytest.mark.slow
def test_inherit_in_a_long_lived_worker_notices_an_acl_user_removed_and_made_again(
        make_pipe: Any, server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Broke: a worker prepared the zone's collection (inherit, rules) once for its life, so with a name removed
    from iRODS the files went in without its rule, and once it was made again they went on without it (new objects
    inherit the collection's ACLs, where the rule was gone) until the worker restarted."""
    from irods_ingestd import tasks

    monkeypatch.setattr(access_mod, "RECHECK", 0.5)
    with server.session() as s:
        _make_user(s)
    pipe = make_pipe(acl=[f"read:{DUSER}"], inherit=True)
    ctx = tasks.make_context(pipe.cfg)
    try:
        with pipe:
            def through(rel: str) -> None:
                (pipe.root / rel).write_bytes(os.urandom(500))
                until(pipe, lambda: work_with(pipe, ctx) >= 0 and pipe.ledger.stats("z")["queued"] == 0 and
                      (rel in rels(pipe) or rel in failures(pipe)), timeout=30, what=f"{rel} ingested or failed")

            through("a.dat")
            with server.session() as s:
                s.users.remove(DUSER)
            time.sleep(0.6)
            through("b.dat")
            assert "b.dat" in failures(pipe) and f"no iRODS user or group named {DUSER}" in failures(pipe)["b.dat"], \
                (rels(pipe), failures(pipe))
            with server.session() as s:
                _make_user(s)
            pipe.ledger.retry_failed(["z"])
            through("c.dat")
            until(pipe, lambda: work_with(pipe, ctx) >= 0 and "b.dat" in rels(pipe), timeout=30, what="b.dat")
    finally:
        ctx.sessions.cleanup()
    assert failures(pipe) == {}
    for rel in ("a.dat", "b.dat", "c.dat"):
        assert object_acls(server, f"{pipe.collection}/{rel}").get(DUSER) == "read_object", rel


def test_a_directory_in_move_to_that_leads_back_into_the_zone_never_brings_the_file_back(
        make_pipe: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """check-config refuses a move_to inside the zone; a directory below move_to made later as a symlink into the
    zone (say, done/run -> landing/run) must not move the file back into the zone (ingested again, endlessly)."""
    monkeypatch.setattr(after_run, "RETRY_FAILED", 0.5)
    done = tmp_path / "done"
    done.mkdir()
    pipe = make_pipe(after="move", move_to=str(done), after_hold="0s")
    (pipe.root / "run").mkdir()
    (done / "run").symlink_to(pipe.root / "run")
    d = os.urandom(700)
    with caplog.at_level(logging.WARNING, logger="irods_ingestd"), pipe:
        (pipe.root / "run/a.dat").write_bytes(d)
        until(pipe, lambda: pipe.ledger.stats("z")["done"] >= 1, what="a.dat ingested")
        spin(pipe, 2)
        landed = sorted(p.name for p in (pipe.root / "run").iterdir())
        assert landed == ["a.dat"], landed  # not a.dat.~1~ beside it, to be ingested again
        assert rels(pipe) == {"run/a.dat"}, rels(pipe)
        said = [r.getMessage() for r in caplog.records if "run/a.dat" in r.getMessage()]
        assert any(f"after = move failed: {done}/run leads back into the zone" in m for m in said), said
        (done / "run").unlink()  # the operator fixes it: the file goes
        until(pipe, lambda: not (pipe.root / "run/a.dat").exists(), timeout=30, what="the move once fixed")
    assert (done / "run/a.dat").read_bytes() == d and rels(pipe) == {"run/a.dat"}


@pytest.mark.slow
@pytest.mark.parametrize("versions", ["keep", "replace"])
def test_a_rodsuser_replicates_new_versions_before_the_delete(tmp_path: Path, redis_server: Any, redis_conn: Any,
                                                              server: Any, versions: str) -> None:
    """README: replicate_to needs nothing more of a rodsuser than own on the collection; a second version of a
    file (the object set aside or replaced, its replica on the other resource with it) gets its replicas too."""
    password = secrets.token_hex(8)
    with server.session() as s:
        _make_user(s, password)
        _make_resc(s)
    user = AsUser(server, DUSER, password)
    with pipelines(tmp_path, redis_server.url, user, remove=partial(remove_all, server)) as make:
        pipe = make(after="delete", after_hold="0s", replicate_to=DRESC, versions=versions)
        with server.session() as s:
            s.collections.create(pipe.collection, recurse=True)
            s.acls.set(iRODSAccess("own", pipe.collection, DUSER))
        server_readable(pipe.root)
        v1, v2 = os.urandom(900), os.urandom(1100)
        with pipe:
            for v in (v1, v2):
                (pipe.root / "a.dat").write_bytes(v)
                until(pipe, lambda: not (pipe.root / "a.dat").exists(), what="a.dat replicated and deleted")
        assert failures(pipe) == {}
        obj = f"{pipe.collection}/a.dat"
        assert replicas(server, obj) == [("demoResc", "1", sha2(v2)), (DRESC, "1", sha2(v2))]
        if versions == "keep":
            assert replicas(server, obj + ".~1~") == [("demoResc", "1", sha2(v1)), (DRESC, "1", sha2(v1))]
        assert rels(pipe) == ({"a.dat", "a.dat.~1~"} if versions == "keep" else {"a.dat"})


@pytest.mark.parametrize("how", ["removed", pytest.param("overwritten", marks=pytest.mark.slow)])
def test_an_object_removed_or_overwritten_in_irods_during_after_hold_keeps_the_landing_file(
        make_pipe: Any, server: Any, how: str) -> None:
    """Broke: the landing file is the only other copy, and once its object was gone from iRODS (or held other
    bytes) during after_hold, the delete lost the data. Now the deferred action looks at the object first."""
    pipe = make_pipe(after="delete", after_hold="2s")
    d = os.urandom(1000)
    f = pipe.root / "a.dat"
    obj = f"{pipe.collection}/a.dat"
    with pipe:
        f.write_bytes(d)
        until(pipe, lambda: pipe.ledger.stats("z")["done"] == 1, what="a.dat ingested")
        with server.session() as s:
            if how == "removed":
                s.data_objects.unlink(obj, force=True)
            else:
                other = pipe.tmp / "other.dat"
                other.write_bytes(os.urandom(1000))
                s.data_objects.put(str(other), obj, forceFlag="", regChksum="")
        until(pipe, lambda: held(pipe)["held"] == 1 or not f.exists(), what="the file held (or deleted)")
        spin(pipe, 1)
        assert f.read_bytes() == d, f"deleted although its object was {how} in iRODS"
        assert held(pipe)["a.dat"] == f"held: {obj} is no longer in iRODS as it was verified (removed, or other " \
            f"bytes put there): the landing file stays", held(pipe)
        text = status.render(status.gather(pipe.cfg))
        assert "held: a.dat: held: " in text, text
        t = time.time()
        os.utime(f, (t, t))  # the operator's remedy (README): touched, it is ingested again, then deleted
        until(pipe, lambda: not f.exists(), what="the touched file ingested again and deleted")
    from irods.models import DataObject
    objs = pipe.objects()
    # the other bytes put there are kept as an earlier version (versions = "keep")
    assert sorted(objs) == ([obj] if how == "removed" else [obj, obj + ".~1~"]), objs
    assert objs[obj][DataObject.checksum] == sha2(d), objs
    assert held(pipe) == {"held": 0}


@pytest.mark.parametrize("inherit", [False, True])
@pytest.mark.parametrize("level", ["read", pytest.param("null", marks=pytest.mark.slow)])
def test_an_acl_that_takes_the_service_accounts_own_rights_away_fails_clearly(
        tmp_path: Path, redis_server: Any, redis_conn: Any, server: Any, level: str, inherit: bool) -> None:
    """Broke: acl = ["read:<the service account>"] (or null) was granted on the temporary copy before its rename
    and locked the worker out of its own object: the file failed with 'CAT_NO_ACCESS_PERMISSION: None' (or
    CAT_NO_ROWS_FOUND) and the .part object stayed behind (with inherit, on the whole collection)."""
    password = secrets.token_hex(8)
    with server.session() as s:
        _make_user(s, password)
    user = AsUser(server, DUSER, password)
    with pipelines(tmp_path, redis_server.url, user, remove=partial(remove_all, server)) as make:
        pipe = make(acl=[f"{level}:{DUSER}"], inherit=inherit, after="delete", after_hold="0s")
        with server.session() as s:
            s.collections.create(pipe.collection, recurse=True)
            s.acls.set(iRODSAccess("own", pipe.collection, DUSER))
        server_readable(pipe.root)
        from irods_ingestd.actions.check_config import check_services

        said = f"zone 'z'.acl: \"{level}:{DUSER}\": {DUSER} is the iRODS user irods-ingestd runs as"
        assert any(p.startswith(said) for p in check_services(pipe.cfg)), check_services(pipe.cfg)
        with pipe:
            (pipe.root / "a.dat").write_bytes(b"abc")
            until(pipe, lambda: "a.dat" in failures(pipe), timeout=30, what="a.dat to fail")
        assert failures(pipe)["a.dat"].startswith(f"zone 'z': acl \"{level}:{DUSER}\": {DUSER} is the iRODS user"), \
            failures(pipe)
        assert (pipe.root / "a.dat").read_bytes() == b"abc"
        with server.session() as s:  # nothing half-made, and the collection untouched
            assert not list(s.collections.get(pipe.collection).data_objects)
            assert object_acls_coll(s, pipe.collection).get(DUSER) == "own"


def object_acls_coll(s: Any, coll: str) -> dict[str, str]:
    return {a.user_name: a.access_name for a in s.acls.get(s.collections.get(coll))}


@pytest.mark.slow
def test_a_run_directory_moved_whole_never_goes_back_into_the_zone(make_pipe: Any, tmp_path: Path) -> None:
    done = tmp_path / "done"
    done.mkdir()
    pipe = make_pipe(after="move", move_to=str(done), after_hold="0s", complete_when="marker", marker="DONE")
    (pipe.root / "batch").mkdir()
    (done / "batch").symlink_to(pipe.root / "batch")
    with pipe:
        (pipe.root / "batch/run1").mkdir()
        (pipe.root / "batch/run1/a.dat").write_bytes(b"a")
        (pipe.root / "batch/run1/DONE").write_bytes(b"")
        until(pipe, lambda: pipe.ledger.stats("z")["done"] >= 2, what="the run ingested")
        spin(pipe, 3)
    landed = sorted(str(p.relative_to(pipe.root)) for p in pipe.root.rglob("*"))
    assert landed in (["batch", "batch/run1", "batch/run1/DONE", "batch/run1/a.dat"], ["batch"]), landed
    assert rels(pipe) == {"batch/run1/a.dat", "batch/run1/DONE"}, rels(pipe)


def test_a_move_to_another_filesystem_that_is_full_leaves_no_partial_copy(
        make_pipe: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """move_to on a full filesystem (a small tmpfs): the copy fails with ENOSPC; the file stays, nothing partial
    is left in move_to, and once there is room it is moved."""
    monkeypatch.setattr(after_run, "RETRY_FAILED", 0.5)
    done = tmp_path / "small"
    done.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(done)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        (done / "filler").write_bytes(b"\0" * 200_000)
        pipe = make_pipe(after="move", move_to=str(done), after_hold="0s")
        d = os.urandom(120_000)
        f = pipe.root / "a.dat"
        with pipe:
            f.write_bytes(d)
            until(pipe, lambda: pipe.ledger.stats("z")["done"] == 1, what="a.dat ingested")
            spin(pipe, 1.5)
            assert f.read_bytes() == d
            assert sorted(p.name for p in done.iterdir()) == ["filler"], list(done.iterdir())
            (done / "filler").unlink()
            until(pipe, lambda: not f.exists(), timeout=30, what="the move once there is room")
        assert (done / "a.dat").read_bytes() == d
        assert sorted(p.name for p in done.iterdir()) == ["a.dat"]
    finally:
        subprocess.run(["umount", str(done)], check=False)


DREPL = f"ingestd_disposal_repl_{_PID}"
DLEAVES = [f"ingestd_disposal_leaf{i}_{_PID}" for i in (1, 2)]


@pytest.fixture
def replication_resource(server: Any) -> Iterator[str]:
    """A replication resource of two unixfilesystem leaves (the README's way to replicate every object)."""
    with server.session() as s:
        s.resources.create(DREPL, "replication")
        for leaf in DLEAVES:
            s.resources.create(leaf, "unixfilesystem", host=socket.gethostname(),
                               path=f"/var/lib/irods/{leaf}_vault")
            s.resources.add_child(DREPL, leaf)
    try:
        yield DREPL
    finally:
        with server.session() as s:
            for leaf in DLEAVES:
                with contextlib.suppress(Exception):
                    s.resources.remove_child(DREPL, leaf)
                with contextlib.suppress(Exception):
                    s.resources.remove(leaf)
            with contextlib.suppress(Exception):
                s.resources.remove(DREPL)
        for leaf in DLEAVES:
            shutil.rmtree(f"/var/lib/irods/{leaf}_vault", ignore_errors=True)


def test_min_replicas_on_a_replication_resource_lets_the_file_go(make_pipe: Any, server: Any,
                                                                 replication_resource: str) -> None:
    pipe = make_pipe(after="delete", after_hold="0s", min_replicas=2, resource=replication_resource)
    d = os.urandom(3000)
    f = pipe.root / "a.dat"
    obj = f"{pipe.collection}/a.dat"
    try:
        with pipe:
            f.write_bytes(d)
            until(pipe, lambda: not f.exists() or held(pipe)["held"] == 1, timeout=30, what="a.dat deleted or held")
            spin(pipe, 1)
            assert not f.exists(), held(pipe)
        reps = replicas(server, obj)
        assert sorted(r for r, _, _ in reps) == sorted(f"{DREPL};{leaf}" for leaf in DLEAVES), reps
        assert all(st == "1" and ck == sha2(d) for _, st, ck in reps), reps
        assert failures(pipe) == {}
    finally:
        remove_all(server, pipe.collection)  # before the resources go (they refuse to go while they hold data)


def test_inherit_with_the_local_zone_spelled_out_sets_the_collection_once(make_pipe: Any, server: Any,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """acl = ["read:name#<local zone>"]: the catalog answers the rule on the collection as "name"; compared as
    "name#zone" it looked missing at each look, and the recursive ACL call (everything below the collection) was
    sent again, now every RECHECK."""
    from irods_ingestd import tasks
    from irods_ingestd.ingest import catalog

    calls: list[str] = []
    real = catalog.set_access
    monkeypatch.setattr(catalog, "set_access", lambda s, path, *a, **k: (calls.append(path), real(s, path, *a, **k)))
    monkeypatch.setattr(access_mod, "RECHECK", 0.0)
    with server.session() as s:
        _make_user(s)
        local = s.zone
    pipe = make_pipe(acl=[f"read:{DUSER}#{local}"], inherit=True)
    ctx = tasks.make_context(pipe.cfg)
    try:
        with pipe:
            for i in range(3):
                (pipe.root / f"f{i}.dat").write_bytes(os.urandom(100))
                until(pipe, lambda i=i: work_with(pipe, ctx) >= 0 and f"f{i}.dat" in rels(pipe), timeout=30,
                      what=f"f{i}.dat")
    finally:
        ctx.sessions.cleanup()
    assert calls == [pipe.collection], calls
    assert object_acls(server, f"{pipe.collection}/f2.dat").get(DUSER) == "read_object"


@pytest.mark.slow
def test_a_good_replica_of_other_bytes_on_the_replicate_to_resource_holds_the_file(make_pipe: Any, server: Any) -> None:
    """Someone's good replica on the replicate_to resource whose checksum is not the file's: the worker may not
    count it, and the file stays (held, with the reason), whatever the replication call does."""
    with server.session() as s:
        _make_resc(s)
    pipe = make_pipe(after="delete", after_hold="2s", replicate_to=DRESC)
    d = os.urandom(2000)
    obj = f"{pipe.collection}/a.dat"
    f = pipe.root / "a.dat"
    with pipe:
        f.write_bytes(d)
        until(pipe, lambda: pipe.ledger.stats("z")["done"] == 1, what="a.dat ingested")
        with server.session() as s:
            s.data_objects.replicate(obj, resource=DRESC)
            s.data_objects.modDataObjMeta({"objPath": obj, "replNum": 1}, {"chksum": sha2(b"other")}, ADMIN_KW="")
        until(pipe, lambda: held(pipe)["held"] == 1 or not f.exists(), what="the file held (or gone)")
        spin(pipe, 1)
        assert f.read_bytes() == d, replicas(server, obj)
        why = held(pipe)["a.dat"]
        assert "held: 1 of min_replicas = 2" in why and DRESC in why, why


def test_a_move_onto_a_directory_or_a_dangling_link_of_its_name_in_move_to(make_pipe: Any, tmp_path: Path) -> None:
    """move_to already has a directory named like the file, or a symlink to nowhere: neither is replaced or
    followed; the file goes in beside them as name.~1~."""
    done = tmp_path / "done"
    (done / "a.dat").mkdir(parents=True)
    (done / "a.dat" / "inside").write_bytes(b"keep me")
    (done / "b.dat").symlink_to(tmp_path / "nowhere" / "b.dat")
    pipe = make_pipe(after="move", move_to=str(done), after_hold="0s")
    data = {"a.dat": os.urandom(300), "b.dat": os.urandom(301)}
    with pipe:
        for rel, b in data.items():
            (pipe.root / rel).write_bytes(b)
        until(pipe, lambda: not any((pipe.root / rel).exists() for rel in data), what="the files moved")
    assert (done / "a.dat" / "inside").read_bytes() == b"keep me"
    assert (done / "b.dat").is_symlink() and not (tmp_path / "nowhere").exists()
    for rel, b in data.items():
        assert (done / f"{rel}.~1~").read_bytes() == b, rel


@pytest.mark.slow
def test_a_replicate_to_vault_the_server_cannot_write_holds_the_file_until_fixed(make_pipe: Any, server: Any) -> None:
    """The replication fails on the server (its vault not writable by the irods account): held with the
    server's reason, nothing half-made counted; once the vault is fixed the replica is made and the file goes."""
    with server.session() as s:
        _make_resc(s)
    import pwd

    irods_user = pwd.getpwnam("irods")
    DVAULT.mkdir(parents=True, exist_ok=True)
    owner = (irods_user.pw_uid, irods_user.pw_gid, 0o750)
    pipe = make_pipe(after="delete", after_hold="0s", replicate_to=DRESC)
    d = os.urandom(1500)
    f = pipe.root / "a.dat"
    obj = f"{pipe.collection}/a.dat"
    # every directory of the vault, not only its root: an earlier test of the session may have made
    # home/rods there already (the replication then went ahead and nothing was held)
    dirs = [Path(top) for top, _, _ in os.walk(DVAULT)]

    def vault_writable(yes: bool) -> None:
        for v in dirs:
            os.chown(v, *(owner[:2] if yes else (0, 0)))
            v.chmod(owner[2] if yes else 0o555)

    try:
        vault_writable(False)
        with pipe:
            f.write_bytes(d)
            until(pipe, lambda: held(pipe)["held"] == 1, what="the file held")
            spin(pipe, 1)
            assert f.read_bytes() == d
            why = held(pipe)["a.dat"]
            assert why.startswith("held: ") and obj in why or DRESC in why, why
            vault_writable(True)
            until(pipe, lambda: not f.exists(), what="the file to go once the vault is writable")
    finally:
        vault_writable(True)
    reps = replicas(server, obj)
    assert [(r, st, ck) for r, st, ck in reps if st == "1"] == [("demoResc", "1", sha2(d)), (DRESC, "1", sha2(d))], reps
    assert held(pipe) == {"held": 0} and failures(pipe) == {}
