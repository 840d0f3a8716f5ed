"""The worker's ingest against the iRODS test server (real TCP, unmodified python-irodsclient) and real Redis."""

from __future__ import annotations

import os
import random
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import redis
from irods.column import Like
from irods.models import Collection, DataObject

from irods_ingestd import ingest, names
from irods_ingestd.config import Config, IrodsConfig, QueueConfig, RedisConfig, ZoneConfig
from irods_ingestd.ingest import catalog
from irods_ingestd.irods_session import SessionHolder
from irods_ingestd.job import Batch, FileItem, ZoneSpec
from irods_ingestd.ledger import Ledger
from irods_ingestd.locks import FileLock
from tests.expect import sha2
from tests.landing import remove_collections, server_readable

MiB = 1 << 20


@dataclass
class Env:
    tmp: Path
    root: Path
    coll: str
    config: Config
    irods: Any
    r: redis.Redis
    contexts: list[ingest.IngestContext]

    def ctx(self, **zone_kw: Any) -> ingest.IngestContext:
        cfg = self.config
        if zone_kw:
            cfg = replace(cfg, zones=(replace(cfg.zones[0], **zone_kw),))
        c = ingest.IngestContext(config=cfg, sessions=SessionHolder(cfg.irods), ledger=Ledger(self.r, "ingestd"),
                                 redis=self.r, sleep=lambda s: None)
        self.contexts.append(c)
        return c

    def zone(self, ctx: ingest.IngestContext | None = None) -> ZoneSpec:
        return ZoneSpec.from_config((ctx.config if ctx else self.config).zones[0])

    def write(self, rel: str, data: bytes) -> FileItem:
        p = self.root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        return self.item(rel)

    def item(self, rel: str) -> FileItem:
        st = os.lstat(self.root / rel)
        return FileItem(rel, st.st_size, st.st_mtime_ns)

    def queue(self, zone: str, items: list[FileItem]) -> None:
        ledger = Ledger(self.r, "ingestd")
        pipe = self.r.pipeline()
        ledger.mark_queued(pipe, zone, [(f.rel, f.size, f.mtime_ns) for f in items])
        pipe.execute()

    def run(self, ctx: ingest.IngestContext, items: list[FileItem]) -> dict[str, int]:
        self.queue(ctx.config.zones[0].name, items)
        return ingest.ingest_batch(ctx, Batch(self.zone(ctx), tuple(items)))

    def session(self) -> Any:
        return self.irods.session()


@pytest.fixture
def env(tmp_path: Path, irods: Any, redis_server: Any, redis_conn: redis.Redis) -> Iterator[Env]:
    root = server_readable(tmp_path / "landing")  # register mode: the server reads the landing files
    envfile = irods.write_env_file(tmp_path / "irods_environment.json")
    coll = f"{irods.home}/t-{uuid.uuid4().hex[:8]}"
    cfg = Config(
        source="<test>", redis=RedisConfig(url=redis_server.url),
        irods=IrodsConfig(environment_file=envfile, password=irods.password, connection_timeout=20),
        queue=QueueConfig(retries=2, backoff=0.01, backoff_max=0.05, job_timeout=120),
        zones=(ZoneConfig(name="z1", path=root, collection=coll),),
    )
    e = Env(tmp_path, root, coll, cfg, irods, redis_conn, [])
    yield e
    for c in e.contexts:
        c.sessions.cleanup()
    remove_collections(irods, coll)


def objects_under(sess: Any, coll: str) -> dict[str, tuple[int, str, str]]:
    out = {}
    q = sess.query(Collection.name, DataObject.name, DataObject.size, DataObject.checksum, DataObject.path) \
        .filter(Like(Collection.name, coll + "%"))
    for row in q:
        out[row[Collection.name] + "/" + row[DataObject.name]] = (
            int(row[DataObject.size]), row[DataObject.checksum] or "", row[DataObject.path])
    return out


def identities(sess: Any, coll: str) -> dict[str, tuple[int, str]]:
    """Object path → (data id, modify time): unchanged when nothing was written, on any server."""
    q = sess.query(Collection.name, DataObject.name, DataObject.id, DataObject.modify_time) \
        .filter(Like(Collection.name, coll + "%"))
    return {r[Collection.name] + "/" + r[DataObject.name]: (int(r[DataObject.id]), str(r[DataObject.modify_time]))
            for r in q}


def avus(sess: Any, path: str) -> dict[str, str]:
    return {m.name: m.value for m in sess.metadata.get(DataObject, path)}


def mixed_files(env: Env, n: int, seed: int = 1) -> list[FileItem]:
    rng = random.Random(seed)
    sizes = [0, 1, 100, 4096, 8191, 8192, 8193, 65536, 1 * MiB + 7, 3 * MiB]
    items = []
    for i in range(n):
        size = sizes[i % len(sizes)] if i < 2 * len(sizes) else rng.randint(0, 200_000)
        rel = f"d{i % 7}/sub{i % 3}/f{i:04d}.dat" if i % 4 else f"top{i}.bin"
        items.append(env.write(rel, rng.randbytes(size)))
    return items


# ---------------------------------------------------------------------------------------------------


def test_put_mixed_sizes_then_again_moves_nothing(env: Env) -> None:
    ctx = env.ctx()
    items = mixed_files(env, 110)
    items.append(env.write("big/fifty.bin", os.urandom(50 * MiB)))
    summary: dict[str, int] = {}
    for i in range(0, len(items), 50):
        for k, v in env.run(ctx, items[i:i + 50]).items():
            summary[k] = summary.get(k, 0) + v
    assert summary["ingested"] == len(items), summary
    assert summary["failed"] == 0

    with env.session() as sess:
        objs = objects_under(sess, env.coll)
        assert len(objs) == len(items)  # no temporary objects left
        for it in items:
            path = f"{env.coll}/{it.rel}"
            data = (env.root / it.rel).read_bytes()
            size, checksum, phys = objs[path]
            assert size == len(data)
            assert checksum == sha2(data)
            assert Path(phys).read_bytes() == data  # identical bytes in the vault
        a = avus(sess, f"{env.coll}/{items[3].rel}")
        assert a["ingestd::source_path"] == f"{env.root}/{items[3].rel}"
        assert a["ingestd::zone"] == "z1"
        assert a["ingestd::size"] == str(items[3].size)
        assert a["ingestd::mtime"] == str(items[3].mtime_ns)
        assert {"ingestd::source_host", "ingestd::ingest_time", "ingestd::version"} <= set(a)
        assert "ingestd::original_name" not in a
    stats = ctx.ledger.stats("z1")
    assert stats["done"] == len(items) and stats["queued"] == 0

    # the same files again: no bytes, no new objects
    with env.session() as sess:
        before = identities(sess, env.coll)
    if not env.irods.real:
        env.irods.reset_counters()
    again = env.run(env.ctx(), items)
    assert again["already_present"] == len(items), again
    assert again["bytes"] == 0, again
    if not env.irods.real:
        c = env.irods.counters()
        for api in ("DATA_OBJ_WRITE", "DATA_OBJ_OPEN_CREATE", "DATA_OBJ_CREATE", "PHY_PATH_REG", "DATA_OBJ_RENAME"):
            assert c.get(api, 0) == 0, (api, c)
    with env.session() as sess:
        assert objects_under(sess, env.coll).keys() == objs.keys()
        assert identities(sess, env.coll) == before


def test_register_mode_points_at_the_landing_file(env: Env) -> None:
    ctx = env.ctx(mode="register")
    items = [env.write(f"r/{i}.dat", os.urandom(i * 1000)) for i in range(5)]
    s = env.run(ctx, items)
    assert s["ingested"] == 5, s
    with env.session() as sess:
        objs = objects_under(sess, env.coll)
        for it in items:
            size, checksum, phys = objs[f"{env.coll}/{it.rel}"]
            assert phys == os.path.realpath(env.root / it.rel)
            assert checksum == sha2((env.root / it.rel).read_bytes())
            assert avus(sess, f"{env.coll}/{it.rel}")["ingestd::source_path"] == f"{env.root}/{it.rel}"
    with env.session() as sess:
        before = identities(sess, env.coll)
    s = env.run(env.ctx(mode="register"), items)
    assert s["already_present"] == 5, s
    with env.session() as sess:
        assert identities(sess, env.coll) == before  # nothing registered again
    assert all((env.root / it.rel).exists() for it in items)


def test_register_of_unreadable_file_fails_permanently(env: Env) -> None:
    ctx = env.ctx(mode="register")
    it = env.write("secret.dat", b"x" * 10)
    os.chmod(env.root / it.rel, 0)
    s = env.run(ctx, [it])
    assert s["failed"] == 1
    (rel, info), = ctx.ledger.failures("z1")
    assert rel == "secret.dat" and info["kind"] == "permanent"
    assert "cannot read" in info["reason"] or "unreadable local file" in info["reason"], info
    with env.session() as sess:
        assert objects_under(sess, env.coll) == {}  # nothing left registered


def test_register_the_server_cannot_read_says_why(env: Env) -> None:
    """The worker (root here) reads the file, the server's service account cannot: the reason says so."""
    if not env.irods.real:
        pytest.skip("the iRODS test server runs as root and reads any file")
    ctx = env.ctx(mode="register")
    hidden = env.root / "private"
    hidden.mkdir()
    os.chmod(hidden, 0o700)
    it = env.write("private/data.bin", b"only root may read this")
    s = env.run(ctx, [it])
    assert s["failed"] == 1, s
    (rel, info), = ctx.ledger.failures("z1")
    assert rel == "private/data.bin" and info["kind"] == "permanent"
    assert "the iRODS server cannot read" in info["reason"], info
    assert "service account" in info["reason"] and "UNIX_FILE_STAT_ERR" in info["reason"], info
    with env.session() as sess:
        assert objects_under(sess, env.coll) == {}


def test_four_workers_on_a_deep_tree(env: Env) -> None:
    deep = "/".join(f"l{i}" for i in range(10))
    items = []
    for i in range(80):
        depth = 1 + i % 10
        rel = "/".join(deep.split("/")[:depth]) + f"/f{i}.txt"
        items.append(env.write(rel, f"file {i}\n".encode() * (i + 1)))
    env.queue("z1", items)
    chunks = [items[w::4] for w in range(4)]
    results: list[dict[str, int]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def work(chunk: list[FileItem]) -> None:
        try:
            c = env.ctx()
            barrier.wait()
            results.append(ingest.ingest_batch(c, Batch(env.zone(c), tuple(chunk))))
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work, args=(c,)) for c in chunks]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert sum(r["ingested"] for r in results) == len(items), results
    assert sum(r["failed"] for r in results) == 0
    with env.session() as sess:
        assert len(objects_under(sess, env.coll)) == len(items)


def test_changed_after_settle_is_resettled_not_ingested(env: Env) -> None:
    ctx = env.ctx()
    it = env.write("c/changing.log", b"first part\n")
    env.queue("z1", [it])
    with open(env.root / it.rel, "ab") as f:
        f.write(b"more\n")
    s = ingest.ingest_batch(ctx, Batch(env.zone(), (it,)))
    assert s["changed"] == 1 and s["ingested"] == 0
    assert ctx.ledger.pop_resettle("z1") == ["c/changing.log"]
    assert ctx.ledger.get("z1", it.rel) is None
    with env.session() as sess:
        assert not sess.data_objects.exists(f"{env.coll}/{it.rel}")
    # vanished and not-regular files are reported, not failed
    gone = env.write("c/gone", b"x")
    (env.root / "c/gone").unlink()
    d = env.write("c/dir", b"x")
    (env.root / "c/dir").unlink()
    (env.root / "c/dir").mkdir()
    s = env.run(ctx, [gone, d])
    assert s["vanished"] == 1 and s["skipped"] == 1 and s["failed"] == 0


def _no_final_object(env: Env, rel: str) -> None:
    with env.session() as sess:
        names = {p.rsplit("/", 1)[1] for p in objects_under(sess, env.coll)}
    base = rel.rsplit("/", 1)[-1]
    assert base not in names, names


@pytest.mark.standin
@pytest.mark.parametrize("api,error", [("DATA_OBJ_WRITE", -115000), ("DATA_OBJ_CLOSE", -513000),
                                       ("ATOMIC_APPLY_METADATA_OPERATIONS", -115000),
                                       ("DATA_OBJ_RENAME", -115000)])
def test_fault_mid_put_leaves_nothing_complete_and_retry_completes(env: Env, api: str, error: int) -> None:
    ctx = env.ctx()
    data = os.urandom(3 * MiB)
    it = env.write("f/payload.bin", data)
    env.irods.fail_next(api, count=1, error=error)
    env.queue("z1", [it])
    res = ingest.ingest_file(ctx, env.zone(), it, retries=0)
    assert res.result == ingest.DEFERRED, res  # a transient error: handed back, not failed for good
    _no_final_object(env, it.rel)
    assert list(ctx.ledger.failures("z1")) == []
    assert ctx.ledger.pop_resettle("z1") == [it.rel]  # the daemon queues it again
    env.queue("z1", [it])
    # the next attempt completes it and cleans the temporary copy
    res = ingest.ingest_file(ctx, env.zone(), it)
    assert res.result == ingest.INGESTED, res
    with env.session() as sess:
        objs = objects_under(sess, env.coll)
    assert list(objs) == [f"{env.coll}/{it.rel}"]
    assert Path(objs[f"{env.coll}/{it.rel}"][2]).read_bytes() == data
    assert list(ctx.ledger.failures("z1")) == []


@pytest.mark.standin
def test_transient_fault_is_retried_within_the_job(env: Env) -> None:
    ctx = env.ctx()
    it = env.write("f/retry.bin", os.urandom(100_000))
    env.irods.fail_next("DATA_OBJ_WRITE", count=2, error=-115000)
    s = env.run(ctx, [it])
    assert s["ingested"] == 1, s
    assert env.irods.counters()["faults_injected"] == 2


@pytest.mark.standin
def test_dropped_connections_mid_put(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    ctx = env.ctx()
    data = os.urandom(30 * MiB)
    it = env.write("f/dropped.bin", data)
    env.irods.set_delay(0.15)  # slow each request so the drop lands mid-transfer
    out: list[ingest.FileResult] = []
    t = threading.Thread(target=lambda: out.append(ingest.ingest_file(ctx, env.zone(), it)))
    env.queue("z1", [it])
    t.start()
    deadline = time.monotonic() + 20
    while env.irods.counters().get("DATA_OBJ_WRITE", 0) < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    env.irods.drop_connections()
    env.irods.set_delay(0)
    t.join(60)
    assert out and out[0].result == ingest.INGESTED, out
    assert "transient error" in caplog.text  # the drop did hit the transfer, and it was retried
    with env.session() as sess:
        objs = objects_under(sess, env.coll)
    assert list(objs) == [f"{env.coll}/{it.rel}"]
    assert Path(objs[f"{env.coll}/{it.rel}"][2]).read_bytes() == data


def test_conflict_is_not_overwritten_and_retry_after_fix_succeeds(env: Env) -> None:
    ctx = env.ctx()
    it = env.write("x/report.csv", b"ours\n")
    target = f"{env.coll}/x/report.csv"
    other = env.tmp / "other.csv"
    other.write_bytes(b"somebody else's data\n")
    with env.session() as sess:
        sess.collections.create(f"{env.coll}/x", recurse=True)
        sess.data_objects.put(str(other), target)
    s = env.run(ctx, [it])
    assert s["failed"] == 1
    (rel, info), = ctx.ledger.failures("z1")
    assert info["kind"] == "conflict"
    assert "conflict" in info["reason"] and target in info["reason"] and "not overwritten" in info["reason"]
    with env.session() as sess:
        with sess.data_objects.open(target, "r") as f:
            assert f.read() == b"somebody else's data\n"
        # fix it: the owner removes the object; a retry succeeds
        sess.data_objects.unlink(target, force=True)
    assert ctx.ledger.retry_failed(["z1"]) == 1
    assert ctx.ledger.pop_resettle("z1") == ["x/report.csv"]
    s = env.run(ctx, [it])
    assert s["ingested"] == 1
    with env.session() as sess, sess.data_objects.open(target, "r") as f:
        assert f.read() == b"ours\n"


def test_an_updated_file_replaces_its_own_object(env: Env) -> None:
    ctx = env.ctx(versions="replace")
    it = env.write("u/data.txt", b"version 1\n")
    assert env.run(ctx, [it])["ingested"] == 1
    time.sleep(0.01)
    it2 = env.write("u/data.txt", b"version 2, longer\n")
    s = env.run(ctx, [it2])
    assert s["updated"] == 1, s
    with env.session() as sess:
        objs = objects_under(sess, env.coll)
        assert list(objs) == [f"{env.coll}/u/data.txt"]
        assert Path(objs[f"{env.coll}/u/data.txt"][2]).read_bytes() == b"version 2, longer\n"
        assert avus(sess, f"{env.coll}/u/data.txt")["ingestd::size"] == str(it2.size)


def test_interrupted_update_is_rolled_back_then_completed(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """An update stopped between its two renames leaves the old version aside; the next attempt puts it
    back and then does the update (proves the rename-aside design)."""
    ctx = env.ctx(versions="replace")
    it = env.write("u/swap.txt", b"old\n")
    assert env.run(ctx, [it])["ingested"] == 1
    time.sleep(0.01)
    it2 = env.write("u/swap.txt", b"new content\n")
    env.queue("z1", [it2])
    real_rename = catalog.rename
    seen: list[tuple[str, str]] = []
    t = names.target_for(env.coll, "u/swap.txt")

    def crash_on_second_rename(session: Any, src: str, dst: str) -> None:
        seen.append((src, dst))
        if src == t.part_path or len(seen) > 2:  # final → aside done; then the process "dies"
            raise SystemExit("simulated crash between the renames")
        real_rename(session, src, dst)

    monkeypatch.setattr(catalog, "rename", crash_on_second_rename)
    with pytest.raises(SystemExit):
        ingest.ingest_file(ctx, env.zone(ctx), it2, retries=0)
    monkeypatch.setattr(catalog, "rename", real_rename)
    assert seen[0] == (f"{env.coll}/u/swap.txt", t.old_path)
    ctx.sessions.reset()
    with env.session() as sess:
        objs = objects_under(sess, env.coll)
    # crashed state: no final name, the old version aside, the verified new copy under its temp name
    assert sorted(p.rsplit("/", 1)[1] for p in objs) == sorted([t.old_name, t.part_name])
    res = ingest.ingest_file(ctx, env.zone(ctx), it2)
    assert res.result == ingest.UPDATED, res
    with env.session() as sess:
        objs = objects_under(sess, env.coll)
        assert list(objs) == [f"{env.coll}/u/swap.txt"]
        assert Path(objs[f"{env.coll}/u/swap.txt"][2]).read_bytes() == b"new content\n"


def test_register_update_reregisters(env: Env) -> None:
    ctx = env.ctx(mode="register")
    it = env.write("ru/file.dat", b"one")
    assert env.run(ctx, [it])["ingested"] == 1
    time.sleep(0.01)
    it2 = env.write("ru/file.dat", b"two, longer")
    assert env.run(ctx, [it2])["updated"] == 1
    with env.session() as sess:
        objs = objects_under(sess, env.coll)
        assert list(objs) == [f"{env.coll}/ru/file.dat"]
        size, checksum, phys = objs[f"{env.coll}/ru/file.dat"]
        assert (size, checksum, phys) == (11, sha2(b"two, longer"), os.path.realpath(env.root / it.rel))
    assert (env.root / it.rel).read_bytes() == b"two, longer"


@pytest.mark.standin
def test_after_delete_and_move_only_for_verified_files(env: Env) -> None:
    ctx = env.ctx(after="delete", after_hold=0.0)
    ok = env.write("a/ok.dat", b"good")
    bad = env.write("a/bad.dat", b"will fail")
    env.irods.fail_next("ATOMIC_APPLY_METADATA_OPERATIONS", count=1, error=-115000)  # the first file fails
    env.queue("z1", [bad, ok])
    r1 = ingest.ingest_file(ctx, env.zone(ctx), bad, retries=0)
    r2 = ingest.ingest_file(ctx, env.zone(ctx), ok, retries=0)
    assert r1.result == ingest.DEFERRED and r2.result == ingest.INGESTED
    assert (env.root / bad.rel).exists()
    assert not (env.root / ok.rel).exists()

    moved_to = env.tmp / "done"
    ctx = env.ctx(after="move", move_to=moved_to, after_hold=0.0)
    m = env.write("b/c/moved.dat", b"move me")
    conflict = env.write("b/c/conflict.dat", b"mine")
    with env.session() as sess:
        sess.collections.create(f"{env.coll}/b/c", recurse=True)
        p = env.tmp / "x"
        p.write_bytes(b"theirs")
        sess.data_objects.put(str(p), f"{env.coll}/b/c/conflict.dat")
    s = env.run(ctx, [m, conflict])
    assert s["ingested"] == 1 and s["failed"] == 1
    assert (moved_to / "b/c/moved.dat").read_bytes() == b"move me"
    assert not (env.root / m.rel).exists()
    assert (env.root / conflict.rel).exists()
    # the ledger counts them but keeps no entry for files that left the zone: it does not grow forever
    assert ctx.ledger.get("z1", ok.rel) is None and ctx.ledger.get("z1", m.rel) is None
    assert ctx.ledger.get("z1", conflict.rel) is not None
    assert ctx.ledger.stats("z1")["done"] == 2


def test_locked_file_is_handed_back(env: Env) -> None:
    ctx = env.ctx()
    it = env.write("l/held.dat", b"x")
    env.queue("z1", [it])
    other = FileLock(env.r, "ingestd", "z1", it.rel, 30)
    assert other.acquire()
    res = ingest.ingest_file(ctx, env.zone(), it)
    assert res.result == ingest.LOCKED
    assert ctx.ledger.pop_resettle("z1") == [it.rel]
    assert other.release()
    assert FileLock(env.r, "ingestd", "z1", it.rel, 30).acquire()


def test_undecodable_name_is_mapped_with_original_name(env: Env) -> None:
    ctx = env.ctx()
    raw = b"n/caf\xe9 50%.txt"
    p = os.path.join(os.fsencode(env.root), raw)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "wb") as f:
        f.write(b"bytes")
    it = env.item(raw.decode("utf-8", "surrogateescape"))
    assert env.run(ctx, [it])["ingested"] == 1
    target = f"{env.coll}/n/caf%E9 50%25.txt"
    with env.session() as sess:
        a = avus(sess, target)
    assert bytes.fromhex(a["ingestd::original_name"]) == raw
    assert env.run(env.ctx(), [it])["already_present"] == 1


def test_wrong_password_does_not_leak_it(env: Env) -> None:
    secret = "s3cr3t-Pa55word"
    cfg = replace(env.config, irods=replace(env.config.irods, password=secret))
    ctx = ingest.IngestContext(config=cfg, sessions=SessionHolder(cfg.irods), ledger=Ledger(env.r, "ingestd"),
                               redis=env.r, sleep=lambda s: None)
    env.contexts.append(ctx)
    it = env.write("pw.dat", b"x")
    res_holder: list[ingest.FileResult] = []
    res_holder.append(ingest.ingest_file(ctx, env.zone(), it, retries=0))
    assert res_holder[0].result == ingest.DEFERRED  # a refused login fails no file (handed back, like an outage)
    assert "refused the login" in res_holder[0].reason
    assert secret not in res_holder[0].reason
    assert list(ctx.ledger.failures("z1")) == []



def test_session_configuration_error_fails_the_job_not_the_files(env: Env) -> None:
    from irods_ingestd.irods_session import SessionError

    cfg = replace(env.config, irods=replace(env.config.irods, environment_file=env.tmp / "missing.json"))
    ctx = ingest.IngestContext(config=cfg, sessions=SessionHolder(cfg.irods), ledger=Ledger(env.r, "ingestd"),
                               redis=env.r, sleep=lambda s: None)
    it = env.write("cfg.dat", b"x")
    env.queue("z1", [it])
    with pytest.raises(SessionError):
        ingest.ingest_batch(ctx, Batch(env.zone(), (it,)))
    assert list(ctx.ledger.failures("z1")) == []
    entry = ctx.ledger.get("z1", it.rel)
    assert entry is not None and entry.state == b"Q"


def test_symlinks_followed_only_when_the_zone_says_so(env: Env) -> None:
    target = env.write("s/real.dat", b"real bytes")
    os.symlink("real.dat", env.root / "s/link.dat")
    st = os.stat(env.root / "s/link.dat")
    link = FileItem("s/link.dat", st.st_size, st.st_mtime_ns)
    s = env.run(env.ctx(), [link])
    assert s["skipped"] == 1  # not following: a symlink is not a regular file
    ctx = env.ctx(symlinks="follow")
    zone = env.zone(ctx)
    assert zone.follow_symlinks
    env.queue("z1", [link, target])
    s = ingest.ingest_batch(ctx, Batch(zone, (link, target)))
    assert s["ingested"] == 2, s
    with env.session() as sess, sess.data_objects.open(f"{env.coll}/s/link.dat", "r") as f:
        assert f.read() == b"real bytes"


@pytest.mark.standin
def test_one_lookup_query_per_collection_for_a_batch(env: Env) -> None:
    """The batch's objects are looked up with one GenQuery per collection, not one per file; a file whose
    object appeared after that look-up is judged by a fresh one (here: already present, not a conflict)."""
    items = [env.write(f"flat/f{i:03}", os.urandom(100)) for i in range(40)]
    ctx = env.ctx()
    env.run(ctx, items[:1])  # creates the collection
    env.irods.reset_counters()
    s = env.run(ctx, items[1:])
    assert s["ingested"] == 39, s
    c = env.irods.counters()
    queries = c.get("GEN_QUERY", 0)
    # the batch look-up, and per file only the copy's checksum read back (a GenQuery: cheaper than
    # DATA_OBJ_CHKSUM); no per-file look-up of the target
    assert queries <= 3 + 39, queries
    assert c.get("DATA_OBJ_CHKSUM", 0) == 0, c
    # an object that another worker made after the batch's look-up
    late = env.write("flat/late", b"late content")
    other = env.ctx()
    ingest.prefetch(ctx, Batch(env.zone(ctx), (late,)))
    ingest.prefetch(ctx, Batch(env.zone(ctx), (late, items[0])))
    assert (f"{env.coll}/flat", "late") in ctx.prefetched  # says: absent
    assert env.run(other, [late])["ingested"] == 1
    env.queue("z1", [late])
    res = ingest.ingest_file(ctx, env.zone(ctx), late)
    assert res.result == ingest.ALREADY, res


def test_a_zone_chooses_metadata_extractors_by_name(env: Env) -> None:
    """`metadata = ["owner"]`: the extractor's AVUs go in with the provenance, in the same atomic call."""
    ctx = env.ctx(metadata=("owner",))
    it = env.write("m/owned.dat", b"whose is it")
    assert env.run(ctx, [it])["ingested"] == 1
    with env.session() as sess:
        a = avus(sess, f"{env.coll}/m/owned.dat")
    assert a["ingestd::owner"] == "root" and a["ingestd::group"] == "root", a
    assert a["ingestd::source_path"] == f"{env.root}/m/owned.dat"  # the provenance is always there
