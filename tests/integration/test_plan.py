"""`irods-ingestd plan`, the dry run, through the CLI on the real server: each file of a tree listed with its
reason, Redis (MONITOR and a dump of every key) and iRODS (a GenQuery of the collection) unchanged by it, and
its predictions then checked against what the real pipeline does with the same tree."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from irods.column import Like
from irods.meta import iRODSMeta
from irods.models import Collection, DataObject, DataObjectMeta

from irods_ingestd import planner
from irods_ingestd.ledger import Ledger
from tests.landing import server_readable
from tests.pipeline_harness import Pipeline
from tests.privileges import fs_user

ROOT = Path(__file__).resolve().parents[2]
OLD = time.time() - 3600  # settled long ago
BAD_MAPPED = "\x01" * 90 + ".txt"  # each control byte becomes %01 in iRODS: 274 bytes, over 255
LONG_DIR = "/".join(["d" * 200] * 6)  # a logical path over iRODS' 1087 bytes
READ_ONLY = {"PING", "HGETALL", "HMGET", "HGET", "CLIENT", "HELLO", "SELECT", "INFO", "ECHO", "GET", "EXISTS",
             "TYPE", "HLEN", "SCAN", "TTL", "PTTL", "DUMP", "KEYS", "COMMAND"}


def cli(cfg: Path, *args: str) -> subprocess.CompletedProcess:  # type: ignore[type-arg]
    return subprocess.run([sys.executable, "-m", "irods_ingestd", "--log-target", "stderr", "-c", str(cfg),
                           "plan", *args], capture_output=True, text=True, cwd=ROOT, timeout=60)


def write(path: Path, data: bytes | str, mtime: float | None = OLD) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def redis_dump(r: redis.Redis) -> dict[bytes, tuple[bytes, int]]:
    """Every key: its serialized value and whether it has a TTL (the values themselves, not a count)."""
    return {k: (r.dump(k) or b"", int(r.ttl(k) >= 0)) for k in r.scan_iter(count=1000)}


def irods_state(s: Any, coll: str) -> list[tuple[Any, ...]]:
    """Every collection, data object (size, checksum, modify time) and AVU at and below coll."""
    rows: list[tuple[Any, ...]] = []
    for cond in (Collection.name == coll, Like(Collection.name, coll + "/%")):
        rows += [("C", r[Collection.name], r[Collection.modify_time]) for r in
                 s.query(Collection.name, Collection.modify_time).filter(cond)]
        rows += [("D", r[Collection.name], r[DataObject.name], r[DataObject.size], r[DataObject.checksum],
                  r[DataObject.modify_time], r[DataObject.replica_number]) for r in
                 s.query(Collection.name, DataObject.name, DataObject.size, DataObject.checksum,
                         DataObject.modify_time, DataObject.replica_number).filter(cond)]
        rows += [("M", r[Collection.name], r[DataObject.name], r[DataObjectMeta.name], r[DataObjectMeta.value])
                 for r in s.query(Collection.name, DataObject.name, DataObjectMeta.name, DataObjectMeta.value)
                 .filter(cond)]
    return sorted(rows, key=repr)


class Monitor:
    """Redis MONITOR in a thread: every command sent while it runs, by name."""

    def __init__(self, r: redis.Redis) -> None:
        self.commands: list[str] = []
        self._r = r  # held: the client's pool closes its connections when it is collected
        self._m = r.monitor()
        self._m.__enter__()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while True:
            cmd = self._m.next_command()["command"]
            if cmd == "ECHO plan-test-end":
                return
            self.commands.append(cmd)

    def stop(self, r: redis.Redis) -> list[str]:
        r.echo("plan-test-end")
        self._t.join(10)
        self._m.__exit__()
        return self.commands


@pytest.fixture
def pipe(tmp_path: Path, redis_server: Any, redis_conn: Any, irods: Any) -> Any:
    p = Pipeline(tmp_path, redis_server.url, irods, root=server_readable(tmp_path / "landing"),
                 zone={"settle": "20s", "exclude": ["*.log", "skipme"], "rescan": "60s"})
    yield p
    p.__exit__(None, None, None)
    p.cleanup()


def _tree(p: Pipeline, s: Any) -> None:
    root = p.root
    assert root is not None
    write(root / "new.txt", "new")
    write(root / "sub" / "deep.dat", "deep")
    write(root / "fresh.txt", "still being written", mtime=None)
    write(root / "junk.tmp", "temp")
    write(root / "run.log", "log")
    write(root / "skipme" / "inner.txt", "inner")
    write(root / ".x.ingestd-0123abcd.part", "reserved")
    os.mkfifo(root / "fifo")
    os.symlink("new.txt", root / "link")
    write(root / BAD_MAPPED, "mapped too long")
    write(root / LONG_DIR / "f.txt", "path too long")
    # in iRODS already: another file's object (a conflict), the same bytes (present), an earlier version of
    # this zone's own file (an update, the old object kept as mine.txt.~1~)
    s.collections.create(p.collection)
    for name, local, remote in (("conflict.txt", "mine", "theirs!"), ("same.txt", "same", "same"),
                                ("mine.txt", "version 2", "version 1")):
        write(root / name, local)
        tmp = write(p.tmp / f"remote-{name}", remote)
        s.data_objects.put(str(tmp), f"{p.collection}/{name}")
        s.data_objects.chksum(f"{p.collection}/{name}")
    obj = s.data_objects.get(f"{p.collection}/mine.txt")
    for k, v in (("ingestd::zone", p.name), ("ingestd::source_path", f"{root}/mine.txt")):
        obj.metadata.add(iRODSMeta(k, v))
    # in the ledger already, at these very versions
    ledger = Ledger(p.r)
    st = {n: os.stat(write(root / n, n)) for n in ("done.txt", "queued.txt", "failed.txt")}
    pl = p.r.pipeline()
    ledger.mark_queued(pl, p.name, [(n, s_.st_size, s_.st_mtime_ns, "b-gone") for n, s_ in st.items()])
    pl.execute()
    ledger.mark_done(p.name, "done.txt", st["done.txt"].st_size, st["done.txt"].st_mtime_ns, b"\1" * 32)
    ledger.mark_failed(p.name, "failed.txt", st["failed.txt"].st_size, st["failed.txt"].st_mtime_ns, "boom")


EXPECT = {  # path → (action, words of its reason)
    "new.txt": ("ingest", "new in iRODS (put, default resource)"),
    "sub/deep.dat": ("ingest", "new in iRODS"),
    "fresh.txt": ("settling", "then: ingest"),
    "junk.tmp": ("excluded", "temporary name (temp_patterns '*.tmp')"),
    "run.log": ("excluded", "excluded (exclude '*.log')"),
    "skipme": ("excluded", "directory excluded (exclude 'skipme')"),
    ".x.ingestd-0123abcd.part": ("excluded", "reserved name"),
    "fifo": ("excluded", "fifo (never opened)"),
    "link": ("excluded", "symlink (not followed)"),
    "%01" * 90 + ".txt": ("excluded", "bad name: a name of 274 bytes once mapped"),
    f"{LONG_DIR}/f.txt": ("excluded", "bad name: iRODS path too long"),
    "conflict.txt": ("conflict", "not made by irods-ingestd: the file would fail, not overwritten"),
    "same.txt": ("present", "already holds this content"),
    "mine.txt": ("update", "kept as mine.txt.~1~"),
    "done.txt": ("ingested", "in the ledger as ingested"),
    "queued.txt": ("queued", "in the ledger as queued (job b-gone)"),
    "failed.txt": ("failed", "in the ledger as failed: boom"),
}


def test_plan_lists_each_file_with_its_reason_and_changes_nothing(pipe: Pipeline, irods: Any) -> None:
    with irods.session() as s:
        _tree(pipe, s)
        r = pipe.r
        keys_before, irods_before = redis_dump(r), irods_state(s, pipe.collection)
        mon = Monitor(redis.Redis.from_url(pipe.redis_url))
        human = cli(pipe.config_path)
        out = cli(pipe.config_path, "--json")
        commands = mon.stop(r)
        assert redis_dump(r) == keys_before
        assert irods_state(s, pipe.collection) == irods_before
    sent = {c.split()[0].strip('"').upper() for c in commands}
    assert "HGETALL" in sent and sent <= READ_ONLY, commands
    assert out.returncode == 1, out.stderr  # conflicts, names the worker would fail, a failed file
    plan = json.loads(out.stdout)
    assert plan["plan_version"] == 1 and plan["redis"]["ok"] and plan["irods"]["ok"]
    z = plan["zones"][pipe.name]
    files = {f["path"]: f for f in z["files"]}
    assert set(files) == set(EXPECT), sorted(files)
    for path, (action, words) in EXPECT.items():
        assert files[path]["action"] == action and words in files[path]["reason"], (path, files[path])
    # the documented fields, no more, no fewer (README: The dry run)
    assert set(plan) == {"plan_version", "redis", "irods", "zones"}
    assert set(z) == {"path", "collection", "mode", "resource", "versions", "settle", "error", "notes", "counts",
                      "bytes", "files"}
    assert all(set(f) == {"path", "action", "reason", "size", "mtime_ns", "target", "irods", "age", "ready_in",
                          "would_fail"} for f in z["files"])
    assert files["new.txt"]["target"] == f"{pipe.collection}/new.txt" and files["new.txt"]["size"] == 3
    fresh = files["fresh.txt"]
    assert fresh["age"] < 10 and abs(fresh["ready_in"] - (20 - fresh["age"])) < 0.01 and fresh["irods"] == "ingest"
    assert files["conflict.txt"]["would_fail"] and files["%01" * 90 + ".txt"]["would_fail"]
    assert not files["junk.tmp"]["would_fail"]
    assert z["counts"] == {"ingest": 2, "update": 1, "present": 1, "conflict": 1, "settling": 1, "held": 0,
                           "excluded": 8, "ingested": 1, "queued": 1, "failed": 1}
    assert human.returncode == 1
    lines = human.stdout.splitlines()
    assert f"  ingest    new.txt → {pipe.collection}/new.txt (3 bytes): new in iRODS (put, default resource)" in lines
    assert any(ln.startswith("  settling  fresh.txt (19 bytes), ready in ") for ln in lines), lines
    assert "  excluded  junk.tmp: temporary name (temp_patterns '*.tmp')" in lines
    assert lines[-1] == (f"zone {pipe.name}: 2 to ingest, 1 updates (16 bytes to send), 1 present, 1 conflicts, "
                         "1 settling, 8 excluded, 1 ingested, 1 queued, 1 failed")

    # what the plan said is what the pipeline does with the same tree
    ready = ["new.txt", "sub/deep.dat", "conflict.txt", "same.txt", "mine.txt"]
    with pipe:
        deadline = time.monotonic() + 60
        while any(e is None or e.state == b"Q" for e in pipe.ledger.get_many(pipe.name, ready)):
            assert time.monotonic() < deadline, pipe.ledger.get_many(pipe.name, ready)
            pipe.work()
            time.sleep(0.2)
    states = dict(zip(ready, (e.state for e in pipe.ledger.get_many(pipe.name, ready) if e), strict=True))
    assert states == {"new.txt": b"D", "sub/deep.dat": b"D", "conflict.txt": b"F", "same.txt": b"D",
                      "mine.txt": b"D"}
    failures = dict(pipe.ledger.failures(pipe.name))
    assert "not made by irods-ingestd" in failures["conflict.txt"]["reason"]
    objs = pipe.objects()
    assert f"{pipe.collection}/mine.txt.~1~" in objs
    assert pipe.ledger.get(pipe.name, "fresh.txt") is None  # still settling (20 s)


def test_plan_without_redis_or_irods_still_lists_the_walk(tmp_path: Path) -> None:
    root = tmp_path / "landing"
    write(root / "a.txt", "a")
    write(root / "b.tmp", "b")
    env = tmp_path / "env.json"
    env.write_text(json.dumps({"irods_host": "127.0.0.1", "irods_port": 1, "irods_user_name": "rods",
                               "irods_zone_name": "tempZone"}))
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[redis]\nurl = "unix://{tmp_path}/no.sock"\n[irods]\nenvironment_file = "{env}"\n'
                   f'password = "x"\n[[zone]]\nname = "z"\npath = "{root}"\ncollection = "/tempZone/home/rods/z"\n')
    cfg.chmod(0o600)
    out = cli(cfg, "--json")
    assert out.returncode == 1, out.stderr
    plan = json.loads(out.stdout)
    assert not plan["redis"]["ok"] and not plan["irods"]["ok"]
    files = {f["path"]: f for f in plan["zones"]["z"]["files"]}
    assert files["a.txt"]["action"] == "ingest" and "iRODS not asked" in files["a.txt"]["reason"]
    assert files["b.tmp"]["action"] == "excluded"
    human = cli(cfg)
    assert human.stdout.startswith("Redis not read (") and "iRODS not asked (" in human.stdout
    assert "zone z: 1 to ingest" in human.stdout


def test_plan_names_files_the_worker_could_not_read(tmp_path: Path, redis_server: Any, redis_conn: Any,
                                                      irods: Any) -> None:
    """A register zone whose file the iRODS service account cannot read; unknown zones are refused."""
    p = Pipeline(tmp_path, redis_server.url, irods, root=server_readable(tmp_path / "landing"),
                 zone={"mode": "register"})
    assert p.root is not None
    write(p.root / "secret.dat", "secret").chmod(0o600)
    write(p.root / "open.dat", "open").chmod(0o644)
    plan = json.loads(cli(p.config_path, "--json", "--zone", p.name).stdout)
    files = {f["path"]: f for f in plan["zones"][p.name]["files"]}
    assert files["secret.dat"]["action"] == "excluded" and files["secret.dat"]["would_fail"]
    assert "service account cannot read it" in files["secret.dat"]["reason"]
    assert files["open.dat"]["action"] == "ingest" and "new in iRODS (register" in files["open.dat"]["reason"]
    # a put zone's worker reads the file itself: one it cannot open is said with the worker's own words
    put_zone = planner.zone_for(dataclasses.replace(p.cfg.zones[0], mode="put"))
    st = os.stat(p.root / "secret.dat")
    with fs_user():
        assert planner.unreadable(put_zone, "secret.dat", st.st_size, st.st_mtime_ns) == \
            "unreadable local file: Permission denied"
        assert planner.unreadable(put_zone, "open.dat", 4, os.stat(p.root / "open.dat").st_mtime_ns) is None
    bad = cli(p.config_path, "--zone", "nosuch")
    assert bad.returncode == 2 and "no zone named 'nosuch'" in bad.stderr


def test_plan_help_says_it_writes_nothing_and_its_exit_codes() -> None:
    out = subprocess.run([sys.executable, "-m", "irods_ingestd", "plan", "--help"], capture_output=True, text=True,
                         cwd=ROOT, timeout=60)
    assert out.returncode == 0
    text = " ".join(out.stdout.split())
    assert "--zone" in text and "--json" in text and "Writes nothing to Redis or iRODS" in text
    assert "0 nothing would fail, 1 the plan lists failures" in text
    top = subprocess.run([sys.executable, "-m", "irods_ingestd", "--help"], capture_output=True, text=True,
                         cwd=ROOT, timeout=60)
    assert "a dry run" in " ".join(top.stdout.split())


def test_plan_exits_0_when_nothing_would_fail(tmp_path: Path, redis_server: Any, redis_conn: Any, irods: Any) -> None:
    p = Pipeline(tmp_path, redis_server.url, irods, root=server_readable(tmp_path / "landing"))
    assert p.root is not None
    write(p.root / "a.txt", "a")
    write(p.root / "b.tmp", "b")
    out = cli(p.config_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.splitlines()[-1].startswith(f"zone {p.name}: 1 to ingest, 0 updates (1 bytes to send)")
