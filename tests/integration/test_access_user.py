"""Issue 14.3: the pipeline as a non-admin iRODS user (a rodsuser made for the test), with exactly the rights the
README documents (own on the zone's collection), and what fails without them, with a clear reason.
Through the pipeline (daemon thread, real RQ workers in bursts, real Redis) on the real iRODS server."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.access_server import GROUP, USER, AccessServer, access_server, object_acls, remove_all  # noqa: F401
from tests.expect import sha2
from tests.landing import server_readable
from tests.pipeline_harness import Pipeline


@pytest.fixture
def make_pipe(tmp_path: Path, redis_server: Any, redis_conn: Any, access_server: AccessServer) -> Iterator[Any]:  # noqa: F811
    """A pipeline whose config runs as ingestd_access_user, its zone's collection made by rods with `rights`
    given to that user (None: not made at all)."""
    made: list[Pipeline] = []

    def make(rights: str | None, **zone: Any) -> Pipeline:
        p = Pipeline(tmp_path, redis_server.url, access_server.user, zone=zone,
                     root=server_readable(tmp_path / "landing"))
        made.append(p)
        if rights:
            access_server.grant(p.collection, rights)
        return p

    yield make
    for p in made:
        p.__exit__(None, None, None)
        remove_all(access_server.admin, p.collection)


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
