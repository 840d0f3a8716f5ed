"""Issue 14.3, ownership: a zone's ACLs on each object it ingests, by one call a rule or by inheritance on the
zone's collection; a name that is not in iRODS fails the files with the reason (and check-config says so).
Through the pipeline (daemon thread, real RQ workers in bursts, real Redis) on the real iRODS server."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from irods_ingestd.ingest import catalog
from tests.access_server import GROUP, USER, AccessServer, access_server, collection_acls, object_acls  # noqa: F401
from tests.landing import remove_collections, server_readable
from tests.pipeline_harness import pipelines

FILES = ["a.dat", "run1/lane1/b.dat", "run1/lane2/c.dat", "run2/d.dat"]


@pytest.fixture
def make_pipe(tmp_path: Path, redis_server: Any, redis_conn: Any, access_server: AccessServer) -> Iterator[Any]:  # noqa: F811
    with pipelines(tmp_path, redis_server.url, access_server.admin) as make:
        yield make


@pytest.fixture
def acl_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, str, bool]]:
    """Every ACL call the workers send: (path, level, name, recursive)."""
    calls: list[tuple[str, str, str, bool]] = []
    real = catalog.set_access

    def counting(session: Any, path: str, level: str, name: str, zone: str = "", recursive: bool = False) -> None:
        calls.append((path, level, name, recursive))
        real(session, path, level, name, zone, recursive)

    monkeypatch.setattr(catalog, "set_access", counting)
    return calls


def write_files(root: Path, names: list[str]) -> None:
    for i, rel in enumerate(names):
        p = root / rel
        server_readable(p.parent)  # register mode: the server's service account reads the files
        p.write_bytes(os.urandom(100 + i))
        p.chmod(0o644)


def test_each_object_carries_the_zone_acl(make_pipe: Any, access_server: AccessServer,  # noqa: F811
                                         acl_calls: list[Any]) -> None:
    pipe = make_pipe(acl=[f"read:{GROUP}", f"write:{USER}"])
    with pipe:
        write_files(pipe.root, FILES)
        pipe.drain(min_done=len(FILES))
    assert dict(pipe.ledger.failures("z")) == {}
    for rel in FILES:
        acls = object_acls(access_server.admin, f"{pipe.collection}/{rel}")
        assert acls.get(GROUP) == "read_object" and acls.get(USER) == "modify_object", (rel, acls)
    # one call a rule a file, sent to the temporary copy: the final name never showed an object without them
    assert len(acl_calls) == 2 * len(FILES), acl_calls
    assert all(path.endswith(".part") and ".ingestd-" in path for path, *_ in acl_calls), acl_calls


def test_inheritance_gives_new_objects_the_acl_without_a_call_each(make_pipe: Any, access_server: AccessServer,  # noqa: F811
                                                                   acl_calls: list[Any]) -> None:
    pipe = make_pipe(acl=[f"read:{GROUP}", f"own:{USER}"], inherit=True)
    with pipe:
        write_files(pipe.root, FILES[:2])
        pipe.drain(min_done=2)
        write_files(pipe.root, FILES[2:])  # later files, new sub-collections: inherited as well
        pipe.drain(min_done=len(FILES))
    assert dict(pipe.ledger.failures("z")) == {}
    inherit, on_coll = collection_acls(access_server.admin, pipe.collection)
    assert inherit and on_coll.get(GROUP) == "read_object" and on_coll.get(USER) == "own", on_coll
    for rel in FILES:
        acls = object_acls(access_server.admin, f"{pipe.collection}/{rel}")
        assert acls.get(GROUP) == "read_object" and acls.get(USER) == "own", (rel, acls)
    # the rules went onto the zone's collection once (per worker context), never onto an object
    assert acl_calls and all(path == pipe.collection for path, *_ in acl_calls), acl_calls
    assert len(acl_calls) <= 2, acl_calls


def test_inheritance_is_set_again_on_a_recreated_collection(make_pipe: Any, access_server: AccessServer,  # noqa: F811
                                                            acl_calls: list[Any]) -> None:
    pipe = make_pipe(acl=[f"read:{GROUP}"], inherit=True)
    with pipe:
        write_files(pipe.root, ["one.dat"])
        pipe.drain(min_done=1)
        remove_collections(access_server.admin, pipe.collection)  # someone removes the zone's collection
        write_files(pipe.root, ["two/two.dat"])
        pipe.drain(min_done=2)
    assert dict(pipe.ledger.failures("z")) == {}
    inherit, on_coll = collection_acls(access_server.admin, pipe.collection)
    assert inherit and on_coll.get(GROUP) == "read_object", on_coll
    assert object_acls(access_server.admin, f"{pipe.collection}/two/two.dat").get(GROUP) == "read_object"


@pytest.mark.parametrize("inherit", [False, True])
def test_a_name_not_in_irods_fails_the_files_with_the_reason(make_pipe: Any, inherit: bool) -> None:
    pipe = make_pipe(acl=["read:ingestd_access_nosuch"], inherit=inherit)
    with pipe:
        write_files(pipe.root, FILES[:2])
        pipe.drain()
    failures = dict(pipe.ledger.failures("z"))
    assert set(failures) == set(FILES[:2]), failures
    for info in failures.values():
        assert "there is no iRODS user or group named ingestd_access_nosuch" in info["reason"], info
        assert "zone 'z'" in info["reason"] and "acl \"read:ingestd_access_nosuch\"" in info["reason"], info
    assert not pipe.objects()  # nothing landed without its ACLs, and no temporary copy was left behind


def test_check_config_names_a_missing_user_or_resource(make_pipe: Any, access_server: AccessServer) -> None:  # noqa: F811
    from irods_ingestd.actions.check_config import check_services

    pipe = make_pipe(acl=[f"read:{GROUP}", "write:ingestd_access_nosuch", "own:rods"], after="delete",
                     replicate_to=["ingestd_access_nosuch_resc"])
    problems = check_services(pipe.cfg)
    assert "zone 'z'.acl: \"write:ingestd_access_nosuch\": there is no iRODS user or group named " \
           "ingestd_access_nosuch" in problems, problems
    assert "zone 'z'.replicate_to: there is no iRODS resource named 'ingestd_access_nosuch_resc'" in problems
    assert not [p for p in problems if GROUP in p or "rods\"" in p], problems


@pytest.mark.parametrize("inherit", [False, True])
def test_registered_objects_carry_the_acl_one_by_one_or_in_bulk(make_pipe: Any, access_server: AccessServer,  # noqa: F811
                                                                acl_calls: list[Any], inherit: bool) -> None:
    pipe = make_pipe(mode="register", resource="demoResc", acl=[f"read:{GROUP}"], inherit=inherit)
    many = [f"run/f{i:02}.dat" for i in range(12)]
    with pipe:
        write_files(pipe.root, ["first.dat"])  # the first file teaches the worker the server's checksum scheme
        pipe.drain(min_done=1)
        write_files(pipe.root, many)  # then the bulk register could take them (with inheritance it does)
        pipe.drain(timeout=90, min_done=1 + len(many))
    assert dict(pipe.ledger.failures("z")) == {}
    for rel in ["first.dat", *many]:
        assert object_acls(access_server.admin, f"{pipe.collection}/{rel}").get(GROUP) == "read_object", rel
    on_objects = [c for c in acl_calls if c[0] != pipe.collection]
    assert len(on_objects) == (0 if inherit else 1 + len(many)), acl_calls
