"""Issue 14.4, replicas before disposal: a delete/move zone with min_replicas keeps the landing file until the
object has that many good replicas whose checksums match the verified file; with replicate_to the worker makes
them, without it the file is held (status says why). Through the pipeline (daemon thread, real RQ workers in
bursts, real Redis) on the real iRODS server, with a second resource made for the test."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from irods.models import Collection, DataObject

from irods_ingestd.actions import status
from irods_ingestd.ingest import replicas as replicas_mod
from tests.access_server import RESC2, AccessServer, access_server, remove_all, replicas  # noqa: F401
from tests.expect import sha2
from tests.pipeline_harness import Pipeline, pipelines, until


@pytest.fixture
def make_pipe(tmp_path: Path, redis_server: Any, redis_conn: Any, access_server: AccessServer,  # noqa: F811
              monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setattr(replicas_mod, "HOLD_RETRY", 0.5)  # a held file is looked at again soon
    with pipelines(tmp_path, redis_server.url, access_server.admin, remove=partial(remove_all, access_server.admin)) \
            as make:
        yield make


def uncheck(s: Any, obj: str, checksum: str = "") -> None:
    """As rods: replica 1 of obj gets this catalog checksum (none by default)."""
    s.data_objects.modDataObjMeta({"objPath": obj, "replNum": 1}, {"chksum": checksum}, ADMIN_KW="")


def held(pipe: Pipeline) -> dict[str, Any]:
    z = status.gather(pipe.cfg)["zones"]["z"]
    return {"held": z["held"], **{f["path"]: f["reason"] for f in z["held_files"]}}


@pytest.mark.parametrize("after", ["delete", "move"])
def test_replicate_to_makes_the_second_replica_then_the_file_goes(make_pipe: Any, tmp_path: Path,
                                                                  access_server: AccessServer,  # noqa: F811
                                                                  after: str) -> None:
    zone: dict[str, Any] = {"after": after, "after_hold": "0.3s", "replicate_to": RESC2}
    if after == "move":
        zone["move_to"] = str(tmp_path / "done")
    pipe = make_pipe(**zone)
    data = {"run/a.dat": os.urandom(5000), "b.dat": os.urandom(100)}
    with pipe:
        for rel, d in data.items():
            (pipe.root / rel).parent.mkdir(parents=True, exist_ok=True)
            (pipe.root / rel).write_bytes(d)
        until(pipe, lambda: not any((pipe.root / rel).exists() for rel in data), what="the files to go")
    for rel, d in data.items():
        reps = replicas(access_server.admin, f"{pipe.collection}/{rel}")
        assert reps == [("demoResc", "1", sha2(d)), (RESC2, "1", sha2(d))], (rel, reps)
        if after == "move":
            assert (tmp_path / "done" / rel).read_bytes() == d
    assert held(pipe) == {"held": 0}
    assert dict(pipe.ledger.failures("z")) == {}


def test_without_replicate_to_the_file_is_held_until_a_second_replica_verifies(
        make_pipe: Any, access_server: AccessServer) -> None:  # noqa: F811
    pipe = make_pipe(after="delete", after_hold="0s", min_replicas=2)
    f = pipe.root / "a.dat"
    d = os.urandom(4000)
    obj = f"{pipe.collection}/a.dat"
    with pipe:
        f.write_bytes(d)
        until(pipe, lambda: held(pipe)["held"] == 1, what="the file to be held")
        for _ in range(5):
            pipe.work()
            time.sleep(0.3)
        assert f.exists(), "deleted with one replica"
        why = held(pipe)
        assert "held: 1 of min_replicas = 2 good replicas (no replicate_to: waiting for replicas made elsewhere" \
            in why["a.dat"], why
        text = status.render(status.gather(pipe.cfg))
        assert "(1 held for their replicas)" in text and "    held: a.dat: held: 1 of min_replicas = 2" in text, text
        with access_server.admin.session() as s:  # someone (a rule, an admin) replicates it, without a checksum
            s.data_objects.replicate(obj, resource=RESC2)
            uncheck(s, obj)
        assert replicas(access_server.admin, obj)[1] == (RESC2, "1", "")  # the worker has the server compute it
        until(pipe, lambda: not f.exists(), what="the file to go once the second replica verifies")
    assert replicas(access_server.admin, obj) == [("demoResc", "1", sha2(d)), (RESC2, "1", sha2(d))]
    assert held(pipe) == {"held": 0}
    assert dict(pipe.ledger.failures("z")) == {}


@pytest.mark.parametrize("bad", ["bytes", "checksum"])
def test_a_replica_that_does_not_match_the_file_never_lets_it_go(make_pipe: Any, access_server: AccessServer,  # noqa: F811
                                                                  bad: str) -> None:
    pipe = make_pipe(after="delete", after_hold="0s", min_replicas=2)
    f = pipe.root / "a.dat"
    d = os.urandom(4000)
    obj = f"{pipe.collection}/a.dat"
    with pipe:
        f.write_bytes(d)
        until(pipe, lambda: held(pipe)["held"] == 1, what="the file to be held")
        with access_server.admin.session() as s:
            s.data_objects.replicate(obj, resource=RESC2)
            q = s.query(DataObject.path, DataObject.resc_hier).filter(Collection.name == pipe.collection) \
                .filter(DataObject.name == "a.dat")
            vault = next(r[DataObject.path] for r in q if r[DataObject.resc_hier] == RESC2)
            if bad == "bytes":  # the same size, other bytes (a bad disk); no checksum: the server reads them
                Path(vault).write_bytes(bytes(b ^ 0xFF for b in d))
                uncheck(s, obj)
            else:  # the catalog says the replica is other bytes
                uncheck(s, obj, sha2(b"other bytes"))
        for _ in range(10):
            pipe.work()
            time.sleep(0.3)
        assert f.exists(), "deleted although its second replica is not the file"
        why = held(pipe)
        assert why["held"] == 1 and "1 of min_replicas = 2" in why["a.dat"], why
    assert dict(pipe.ledger.failures("z")) == {}
