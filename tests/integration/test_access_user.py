"""Issue 14.3: the pipeline as a non-admin iRODS user (a rodsuser made for the test), with exactly the rights the
README documents (own on the zone's collection), and what fails without them, with a clear reason.
Through the pipeline (daemon thread, real RQ workers in bursts, real Redis) on the real iRODS server."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from irods.access import iRODSAccess

from tests.access_server import GROUP, USER, AccessServer, access_server, object_acls, remove_all  # noqa: F401
from tests.expect import sha2
from tests.landing import server_readable
from tests.pipeline_harness import Pipeline, pipelines


@pytest.fixture
def make_pipe(tmp_path: Path, redis_server: Any, redis_conn: Any, access_server: AccessServer) -> Iterator[Any]:  # noqa: F811
    """A pipeline whose config runs as ingestd_access_user, its zone's collection made by rods with `rights`
    given to that user (None: not made at all)."""
    with pipelines(tmp_path, redis_server.url, access_server.user, remove=partial(remove_all, access_server.admin)) \
            as make:

        def granted(rights: str | None, **zone: Any) -> Pipeline:
            p = make(**zone)
            if rights:
                access_server.grant(p.collection, rights)
            return p

        yield granted


def write(root: Path, rel: str, data: bytes) -> None:
    p = root / rel
    server_readable(p.parent)
    p.write_bytes(data)
    p.chmod(0o644)


def owners(admin: Any, path: str) -> set[str]:
    return {who for who, level in object_acls(admin, path).items() if level == "own"}


def reasons(pipe: Pipeline) -> dict[str, str]:
    return {rel: info["reason"] for rel, info in pipe.ledger.failures("z")}


def test_the_pipeline_runs_as_a_rodsuser_with_own_on_the_collection(make_pipe: Any,
                                                                    access_server: AccessServer) -> None:  # noqa: F811
    pipe = make_pipe("own", acl=[f"read:{GROUP}"], inherit=True, after="delete", after_hold="0s")
    v1, v2 = os.urandom(3000), os.urandom(2000)
    with pipe:
        write(pipe.root, "run/a.dat", v1)
        write(pipe.root, "b.dat", b"bee")
        pipe.drain(min_done=0)
        assert not (pipe.root / "run/a.dat").exists()
        write(pipe.root, "run/a.dat", v2)  # a new version: the old object is set aside by renames, as the user
        pipe.drain()
    assert reasons(pipe) == {}
    objs = {p[len(pipe.collection) + 1:]: row for p, row in pipe.objects().items()}
    from irods.models import DataObject

    assert {k: v[DataObject.checksum] for k, v in objs.items()} == \
        {"run/a.dat": sha2(v2), "run/a.dat.~1~": sha2(v1), "b.dat": sha2(b"bee")}, objs
    for rel in objs:
        path = f"{pipe.collection}/{rel}"
        assert USER in owners(access_server.admin, path), rel
        assert object_acls(access_server.admin, path).get(GROUP) == "read_object", rel


def test_without_write_on_the_collection_the_files_fail_with_the_reason(make_pipe: Any) -> None:
    pipe = make_pipe("read")
    with pipe:
        write(pipe.root, "a.dat", b"data")
        pipe.drain()
    why = reasons(pipe)
    assert list(why) == ["a.dat"] and "CAT_NO_ACCESS_PERMISSION" in why["a.dat"], why


def test_with_write_but_not_own_inheritance_fails_with_the_reason(make_pipe: Any) -> None:
    pipe = make_pipe("write", acl=[f"read:{GROUP}"], inherit=True)
    with pipe:
        write(pipe.root, "a.dat", b"data")
        pipe.drain()
    why = reasons(pipe)
    assert list(why) == ["a.dat"], why
    assert "CAT_NO_ACCESS_PERMISSION" in why["a.dat"] and "needs own on the zone's collection" in why["a.dat"], why


def test_with_write_per_object_acls_work(make_pipe: Any, access_server: AccessServer) -> None:  # noqa: F811
    pipe = make_pipe("write", acl=[f"read:{GROUP}"])  # the user owns what it creates: it may grant on that
    with pipe:
        write(pipe.root, "a.dat", b"data")
        pipe.drain(min_done=1)
    assert reasons(pipe) == {}
    assert object_acls(access_server.admin, f"{pipe.collection}/a.dat").get(GROUP) == "read_object"


def test_register_as_a_rodsuser_is_refused_with_the_reason(make_pipe: Any) -> None:
    pipe = make_pipe("own", mode="register", resource="demoResc")
    with pipe:
        for i in range(3):
            write(pipe.root, f"r{i}.dat", b"data %d" % i)
        pipe.drain()
    why = reasons(pipe)
    assert sorted(why) == ["r0.dat", "r1.dat", "r2.dat"], why
    for reason in why.values():
        assert "SYS_NO_PATH_PERMISSION" in reason and "rodsadmin" in reason and "acSetChkFilePathPerm" in reason
    assert not pipe.objects()


def test_a_rodsuser_never_registers_in_bulk_past_the_path_policy(tmp_path: Path, redis_server: Any, redis_conn: Any,
                                                                 access_server: AccessServer,  # noqa: F811
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """iRODS 5.0.2 takes BULK_DATA_OBJ_REG rows from a rodsuser whatever acSetChkFilePathPerm says: the worker
    must not send them, even once it knows the server's checksum scheme (from an object already there). One
    worker context over two batches (the pipeline's bursts start a new one each time)."""
    from irods_ingestd.config import Config, IrodsConfig, QueueConfig, RedisConfig, ZoneConfig
    from irods_ingestd.ingest import bulk
    from tests.integration.test_ingest import Env

    sent: list[int] = []
    real = bulk._send
    monkeypatch.setattr(bulk, "_send", lambda session, rows, *a: (sent.append(len(rows)), real(session, rows, *a)))
    root = server_readable(tmp_path / "landing")
    coll = f"{access_server.admin.home}/t-{secrets.token_hex(4)}"
    access_server.grant(coll, "own")
    user = access_server.user
    cfg = Config(source="<test>", redis=RedisConfig(url=redis_server.url),
                 irods=IrodsConfig(environment_file=user.write_env_file(tmp_path / "env.json"),
                                   password=user.password, connection_timeout=20),
                 queue=QueueConfig(retries=1, backoff=0.01, backoff_max=0.05, job_timeout=120),
                 zones=(ZoneConfig(name="z1", path=root, collection=coll, mode="register", resource="demoResc"),))
    env = Env(tmp_path, root, coll, cfg, user, redis_conn, [])
    try:
        ctx = env.ctx()
        first = env.write("r0.dat", b"registered by an admin")
        (root / "r0.dat").chmod(0o644)
        with access_server.admin.session() as s:  # the worker finds it already there and learns the scheme
            s.data_objects.register(str(root / "r0.dat"), f"{coll}/r0.dat", regChksum="")
            s.acls.set(iRODSAccess("own", f"{coll}/r0.dat", USER))
        assert env.run(ctx, [first])["already_present"] == 1 and ctx.hash_scheme
        items = [env.write(f"r{i}.dat", b"data %d" % i) for i in range(1, 6)]
        for it in items:
            (root / it.rel).chmod(0o644)
        summary = env.run(ctx, items)
        assert sent == [] and summary["failed"] == 5, (sent, summary)
        why = dict(ctx.ledger.failures("z1"))
        assert all("SYS_NO_PATH_PERMISSION" in info["reason"] for info in why.values()), why
    finally:
        for c in env.contexts:
            c.sessions.cleanup()
        remove_all(access_server.admin, coll)
