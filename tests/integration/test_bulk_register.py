"""Register mode in bulk (BULK_DATA_OBJ_REG, 50 rows a call) against the real iRODS: the objects point at
the landing files with the worker's checksum in the server's scheme and their AVUs; a failed call falls
back to one register a file; a file the server could not read is never bulk-registered."""

from __future__ import annotations

import os
from typing import Any

import irods.exception as iex
import pytest

from irods_ingestd.ingest import bulk
from tests.expect import sha2
from tests.integration.test_ingest import Env, avus, env, objects_under  # noqa: F401 - the fixture


def counting(monkeypatch: pytest.MonkeyPatch, fail: bool = False) -> list[int]:
    calls: list[int] = []
    real = bulk._send

    def send(session: Any, rows: list[Any], resc: str, resc_id: str) -> None:
        calls.append(len(rows))
        if fail:
            raise iex.CAT_SQL_ERR("one bad row rolls the call back")
        real(session, rows, resc, resc_id)

    monkeypatch.setattr(bulk, "_send", send)
    return calls


def test_many_files_register_in_bulk(env: Env, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
                                     caplog: pytest.LogCaptureFixture) -> None:
    calls = counting(monkeypatch)
    ctx = env.ctx(mode="register", resource="demoResc")
    first = env.write("first.dat", b"the first file teaches the worker the server's scheme")
    assert env.run(ctx, [first])["ingested"] == 1
    items = [env.write(f"run/lane{i % 3}/f{i:03}.dat", os.urandom(100 + i)) for i in range(120)]
    s = env.run(ctx, items)
    assert s["ingested"] == 120 and s["failed"] == 0, s
    assert calls and sum(calls) == 120 and max(calls) <= bulk.BULK_ROWS, calls
    assert "one by one" not in caplog.text  # no call fell back: the bulk rows were taken
    with env.session() as sess:
        objs = objects_under(sess, env.coll)
        for it in items[::17]:
            size, checksum, phys = objs[f"{env.coll}/{it.rel}"]
            data = (env.root / it.rel).read_bytes()
            assert (size, checksum, phys) == (len(data), sha2(data), os.path.realpath(env.root / it.rel))
            assert avus(sess, f"{env.coll}/{it.rel}")["ingestd::source_path"] == f"{env.root}/{it.rel}"
            with sess.data_objects.open(f"{env.coll}/{it.rel}", "r") as f:
                assert f.read() == data  # the server serves the registered file
    again = env.run(env.ctx(mode="register", resource="demoResc"), items)
    assert again["already_present"] == 120, again


def test_a_rolled_back_bulk_call_registers_one_by_one(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    ctx = env.ctx(mode="register", resource="demoResc")
    assert env.run(ctx, [env.write("first.dat", b"scheme")])["ingested"] == 1
    calls = counting(monkeypatch, fail=True)
    items = [env.write(f"b/f{i}.dat", os.urandom(50)) for i in range(10)]
    s = env.run(ctx, items)
    assert calls == [10] and s["ingested"] == 10 and s["failed"] == 0, (calls, s)


def test_a_file_the_server_cannot_read_is_not_bulk_registered(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    if not env.irods.real:
        pytest.skip("the iRODS test server runs as root")
    calls = counting(monkeypatch)
    ctx = env.ctx(mode="register", resource="demoResc")
    assert env.run(ctx, [env.write("first.dat", b"scheme")])["ingested"] == 1
    items = [env.write(f"c/f{i}.dat", os.urandom(50)) for i in range(5)]
    os.chmod(env.root / items[2].rel, 0o600)  # root may read it; the server's account may not
    s = env.run(ctx, items)
    assert s["ingested"] == 4 and s["failed"] == 1, s
    assert calls == [4], calls
    (rel, info), = ctx.ledger.failures("z1")
    assert rel == items[2].rel and "cannot read" in info["reason"], info
