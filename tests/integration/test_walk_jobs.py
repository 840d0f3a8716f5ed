"""Walk jobs: a zone's walk listed by walk workers (separate processes, "hosts"), merged by the daemon.

Each test runs real walk worker processes against the test Redis and a daemon in a thread; the files the
walk finds are queued on the ingest queue (no ingest worker runs: the queue's jobs are read back), so the
tests see exactly what the daemon queued, and how often.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from rq import Queue, Worker

from irods_ingestd import keys
from irods_ingestd.actions import status
from irods_ingestd.config import ConfigError, load, validate
from irods_ingestd.walkjobs import HANG_ENV, hang_marker
from irods_ingestd.worker import HOSTNAME_ENV
from tests.daemon_harness import DaemonThread, queued, wait_for

REPO = Path(__file__).resolve().parents[2]


def make_tree(root: Path, top: int = 6, mid: int = 5, per_dir: int = 4) -> set[str]:
    """top × mid directories two levels deep, files at every level (old mtimes: ready at once)."""
    rels: set[str] = set()
    old = time.time() - 3600

    def put(rel: str) -> None:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(rel)
        os.utime(p, (old, old))
        rels.add(rel)

    for i in range(per_dir):
        put(f"f{i}.dat")
    for a in range(top):
        for i in range(per_dir):
            put(f"d{a}/f{i}.dat")
        for b in range(mid):
            for i in range(per_dir):
                put(f"d{a}/e{b}/f{i}.dat")
    return rels


class Env:
    def __init__(self, tmp: Path, redis_url: str, r: redis.Redis, jobs: bool = True, walk_extra: str = "") -> None:
        self.tmp, self.r = tmp, r
        self.root = tmp / "landing"
        self.root.mkdir()
        self.queue = f"ingest-{uuid.uuid4().hex[:6]}"
        env = tmp / "irods_environment.json"
        env.write_text('{"irods_host": "127.0.0.1", "irods_port": 1247, "irods_user_name": "rods", '
                       '"irods_zone_name": "tempZone"}')
        self.cfg_path = tmp / "config.toml"
        self.cfg_path.write_text(f"""
[redis]
url = "{redis_url}"
[irods]
environment_file = "{env}"
[queue]
name = "{self.queue}"
[walk]
jobs = {"true" if jobs else "false"}
chunk = 4
{walk_extra if "chunk_timeout" in walk_extra else 'chunk_timeout = "60s"' + chr(10) + walk_extra}
[[zone]]
name = "wj"
path = "{self.root}"
collection = "/tempZone/home/rods/wj"
settle = "0.3s"
rescan = "1h"
""")
        self.procs: list[subprocess.Popen[str]] = []

    def config(self) -> Any:
        return load(self.cfg_path)

    def walk_queue(self) -> Queue:
        return Queue(self.config().walk.queue, connection=self.r)

    def spawn(self, host: str, hang: str | None = None, cli: bool = False) -> subprocess.Popen[str]:
        """A walk worker as its own process, reporting `host` as its host name."""
        env = dict(os.environ, **{HOSTNAME_ENV: host})
        if hang is not None:
            env[HANG_ENV] = hang
        if cli:
            cmd = [sys.executable, "-m", "irods_ingestd", "worker", "--role", "walk", "-c", str(self.cfg_path),
                   "--log-target", "stderr"]
        else:  # heartbeat every second: a killed worker's job is found abandoned within seconds
            code = ("import logging, sys; logging.basicConfig(level=logging.INFO, stream=sys.stderr); "
                    "from irods_ingestd.config import load; from irods_ingestd.worker import run_worker; "
                    f"c = load({str(self.cfg_path)!r}); run_worker(c, queue_name=[c.walk.queue], "
                    "job_monitoring_interval=1, maintenance_interval=2)")
            cmd = [sys.executable, "-c", code]
        p = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
        self.procs.append(p)
        return p

    def wait_workers(self, n: int) -> None:
        q = self.walk_queue()
        assert wait_for(lambda: Worker.count(connection=self.r, queue=q) >= n, timeout=20), "walk workers did not start"

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@pytest.fixture
def env(tmp_path: Path, redis_server: Any, redis_conn: redis.Redis) -> Iterator[Env]:
    e = Env(tmp_path, redis_server.url, redis_conn)
    yield e
    e.stop()


def run_walk(env: Env, files: int, timeout: float = 60) -> tuple[DaemonThread, list[tuple[str, str, int, int]]]:
    d = DaemonThread(env.config(), env.r)
    with d:
        got = wait_for(lambda: len(queued(env.r, env.queue)) >= files and "wj" in d.daemon.zones
                       and d.daemon.zones["wj"].walks_done >= 1,
                       timeout=timeout, interval=0.2)
        assert got, (f"walk incomplete: {len(queued(env.r, env.queue))} of {files} files queued, "
                     f"{d.daemon.zones['wj'].walks_done} walks done")
        time.sleep(0.5)  # anything queued twice would be queued by now
        return d, queued(env.r, env.queue)


def assert_once(env: Env, rels: set[str], q: list[tuple[str, str, int, int]]) -> None:
    counts = Counter(rel for _, rel, _, _ in q)
    assert set(counts) == rels, f"missing {sorted(rels - set(counts))[:5]}, extra {sorted(set(counts) - rels)[:5]}"
    twice = [rel for rel, n in counts.items() if n > 1]
    assert not twice, f"queued more than once: {twice[:5]}"


def test_several_walk_workers_find_every_file_once(env: Env) -> None:
    rels = make_tree(env.root)
    for i in range(3):
        env.spawn(f"local-{i}")
    env.wait_workers(3)
    d, q = run_walk(env, len(rels))
    assert_once(env, rels, q)
    wj = d.daemon.walk_jobs
    assert wj is not None and "wj" in wj.finished, "the walk did not run as jobs"
    run = wj.finished["wj"]
    assert run.walk.files == len(rels) and run.walk.dirs == 1 + 6 + 30
    assert not env.r.keys(keys.walk_chunks_key("ingestd", "wj", "*")), "the walk's keys were left behind"


def test_two_hosts_share_a_walk(env: Env) -> None:
    rels = make_tree(env.root, top=10, mid=6, per_dir=3)
    env.spawn("host-a", cli=True)  # the command line: worker --role walk
    env.spawn("host-b")
    env.wait_workers(2)
    d, q = run_walk(env, len(rels))
    assert_once(env, rels, q)
    wj = d.daemon.walk_jobs
    assert wj is not None
    assert wj.finished["wj"].hosts == {"host-a", "host-b"}, wj.finished["wj"].hosts


def test_a_killed_walk_workers_chunk_is_redone(env: Env) -> None:
    rels = make_tree(env.root)
    victim = env.spawn("doomed", hang="d3/e2")
    env.wait_workers(1)
    d = DaemonThread(env.config(), env.r)
    with d:
        hung = Path(hang_marker(str(env.root), "d3/e2"))
        assert wait_for(hung.exists, timeout=30), "the worker never reached the chunk it hangs on"
        # `status` says the walk runs as jobs, and how far it is (the hung chunk is outstanding)
        cfg = env.config()
        assert wait_for(lambda: (status.gather(cfg)["zones"]["wj"].get("walk_jobs") or {}).get("outstanding", 0) >= 1,
                        timeout=15), status.gather(cfg)["zones"]["wj"]
        assert "walk as jobs: " in status.render(status.gather(cfg))
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        env.spawn("rescuer")
        assert wait_for(lambda: "wj" in d.daemon.zones and d.daemon.zones["wj"].walks_done >= 1, timeout=60,
                        interval=0.2), \
            "the walk never completed after its worker was killed"
        time.sleep(0.5)
        q = queued(env.r, env.queue)
    hung.unlink()
    assert_once(env, rels, q)
    wj = d.daemon.walk_jobs
    assert wj is not None and wj.finished["wj"].redone >= 1
    assert "rescuer" in wj.finished["wj"].hosts


def test_without_walk_workers_the_daemon_walks_itself(env: Env) -> None:
    rels = make_tree(env.root, top=2, mid=2, per_dir=2)
    d, q = run_walk(env, len(rels))
    assert_once(env, rels, q)
    assert d.daemon.walk_jobs is None or not d.daemon.walk_jobs.finished


def test_walk_config_is_checked(tmp_path: Path) -> None:
    base: dict[str, Any] = {"irods": {"environment_file": str(tmp_path / "e.json")}, "queue": {"name": "q"},
                            "zone": [{"name": "z", "path": str(tmp_path), "collection": "/tempZone/home/rods/z"}]}
    cfg = validate(dict(base), check_paths=False)
    assert cfg.walk.queue == "q-walk" and not cfg.walk.jobs
    with pytest.raises(ConfigError) as e:
        validate(dict(base, walk={"queue": "q", "chunk": 0, "retries": -1, "chunk_timeout": "x", "color": 1}),
                 check_paths=False)
    text = str(e.value)
    for want in ("[walk].queue: 'q' is the ingest queue", "[walk].chunk: must be at least 1",
                 "[walk].retries: must not be negative", "[walk].chunk_timeout", "[walk]: unknown key 'color'"):
        assert want in text, text


def test_scan_jobs_uses_the_walk_workers(tmp_path: Path, redis_server: Any, redis_conn: redis.Redis) -> None:
    e = Env(tmp_path, redis_server.url, redis_conn, jobs=False)  # the flag, not the config, asks for jobs
    try:
        rels = make_tree(e.root, top=8, mid=4, per_dir=3)
        e.spawn("scan-a")
        e.spawn("scan-b")
        e.wait_workers(2)
        done = subprocess.run([sys.executable, "-m", "irods_ingestd", "scan", "--jobs", "-c", str(e.cfg_path),
                               "--log-target", "stderr"], cwd=REPO, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert "scan: 2 walk workers listen" in done.stderr, done.stderr
        assert "runs as jobs" in done.stderr and "done by walk workers on scan-" in done.stderr, done.stderr
        assert f"sent {len(rels)} files" in done.stdout, done.stdout
        assert_once(e, rels, queued(e.r, e.queue))
    finally:
        e.stop()


def test_directories_a_job_walk_listed_are_watched(env: Env) -> None:
    """An inotify zone walked by jobs: the daemon watched every directory before a job listed it, so a file
    written afterwards deep in the tree is reported by its event (the next walk is an hour away)."""
    rels = make_tree(env.root, top=3, mid=3, per_dir=2)
    env.spawn("watch-a")
    env.spawn("watch-b")
    env.wait_workers(2)
    d = DaemonThread(env.config(), env.r)
    with d:
        assert wait_for(lambda: "wj" in d.daemon.zones and d.daemon.zones["wj"].walks_done >= 1, timeout=30,
                        interval=0.1)
        zs = d.daemon.zones["wj"]
        assert zs.watcher.name == "inotify" and d.daemon.walk_jobs is not None and "wj" in d.daemon.walk_jobs.finished
        (env.root / "d2/e1/late.dat").write_text("late")
        assert wait_for(lambda: any(rel == "d2/e1/late.dat" for _, rel, _, _ in queued(env.r, env.queue)),
                        timeout=15), "a file written after the job walk was not seen: its directory was not watched"
    assert_once(env, rels | {"d2/e1/late.dat"}, queued(env.r, env.queue))


def test_a_job_hands_back_what_it_did_not_list(tmp_path: Path, redis_server: Any, redis_conn: redis.Redis) -> None:
    """chunk_files bounds a job: after that many entries it stops and its unlisted directories come back as
    new chunks; every file is still found once."""
    e = Env(tmp_path, redis_server.url, redis_conn, walk_extra="chunk_files = 5")
    try:
        rels = make_tree(e.root, top=5, mid=4, per_dir=4)
        e.spawn("rest-a")
        e.wait_workers(1)
        d, q = run_walk(e, len(rels))
        assert_once(e, rels, q)
        run = d.daemon.walk_jobs.finished["wj"] if d.daemon.walk_jobs else None
        assert run is not None and run.chunks > 26 / 4 + 1, "no job handed back directories"
    finally:
        e.stop()


def test_a_chunk_lost_too_often_ends_the_walk_incomplete(tmp_path: Path, redis_server: Any, redis_conn: redis.Redis,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    """retries = 0: the killed worker's chunk is given up, logged with its directories; the walk ends but
    does not count as a complete walk, and everything else is queued once."""
    e = Env(tmp_path, redis_server.url, redis_conn, walk_extra="retries = 0")
    try:
        rels = make_tree(e.root)
        victim = e.spawn("doomed", hang="d1/e1")
        e.wait_workers(1)
        d = DaemonThread(e.config(), e.r)
        with d:
            hung = Path(hang_marker(str(e.root), "d1/e1"))
            assert wait_for(hung.exists, timeout=30)
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            e.spawn("after")
            wj = wait_for(lambda: d.daemon.walk_jobs if d.daemon.walk_jobs and "wj" in d.daemon.walk_jobs.finished
                          else None, timeout=60, interval=0.2)
            assert wj, "the walk never ended"
            zs = d.daemon.zones["wj"]
            assert zs.walks_done == 0 and zs.walk is None and zs.next_walk > time.monotonic() + 100
            time.sleep(0.5)
            q = queued(e.r, e.queue)
        hung.unlink()
        run = wj.finished["wj"]
        assert "d1/e1" in run.given_up and not run.walk.full
        assert "walk %s is incomplete" in " ".join(r.msg for r in caplog.records)
        lost = set(run.given_up)
        want = {rel for rel in rels if rel.rpartition("/")[0] not in lost}
        assert_once(e, want, q)
    finally:
        e.stop()


def test_walked_by_jobs_and_ingested_on_the_real_server(tmp_path: Path, redis_server: Any, redis_conn: redis.Redis,
                                                        irods: Any) -> None:
    """The whole pipeline: two hosts' workers, one `--role all` (walk jobs, then ingest jobs), one `--role walk`;
    every file of the tree ends in iRODS once and in the ledger as done."""
    from irods.column import Like
    from irods.models import Collection, DataObject

    from irods_ingestd.ledger import Ledger
    from tests.landing import remove_collections

    root = tmp_path / "landing"
    root.mkdir()
    envfile = irods.write_env_file(tmp_path / "irods_environment.json")
    pwfile = tmp_path / "pw"
    pwfile.write_text(irods.password + "\n")
    pwfile.chmod(0o600)
    coll = f"{irods.home}/walkjobs-{uuid.uuid4().hex[:8]}"
    cfg_path = tmp_path / "config.toml"
    queue = f"ingest-{uuid.uuid4().hex[:6]}"
    cfg_path.write_text(f"""
[redis]
url = "{redis_server.url}"
[irods]
environment_file = "{envfile}"
password_file = "{pwfile}"
[queue]
name = "{queue}"
[walk]
jobs = true
chunk = 3
[[zone]]
name = "wj"
path = "{root}"
collection = "{coll}"
settle = "0.3s"
rescan = "1h"
""")
    rels = make_tree(root, top=3, mid=2, per_dir=2)
    procs = []
    try:
        for host, role in (("ingest-host", "all"), ("walk-host", "walk")):
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "irods_ingestd", "worker", "--role", role, "--hostname", host, "-c",
                 str(cfg_path), "--log-target", "stderr"], cwd=REPO, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL))
        cfg = load(cfg_path)
        q = Queue(cfg.walk.queue, connection=redis_conn)
        assert wait_for(lambda: Worker.count(connection=redis_conn, queue=q) >= 2, timeout=20)
        led = Ledger(redis_conn)
        with DaemonThread(cfg, redis_conn) as d:
            assert wait_for(lambda: led.stats("wj").get("done", 0) >= len(rels), timeout=120, interval=0.3), \
                led.stats("wj")
            wj = d.daemon.walk_jobs
            assert wj is not None and "wj" in wj.finished
        with irods.session() as s:
            rows = s.query(Collection.name, DataObject.name).filter(Like(Collection.name, f"{coll}%")).all()
            got = Counter(f"{r[Collection.name]}/{r[DataObject.name]}"[len(coll) + 1:] for r in rows)
        assert set(got) == rels and max(got.values()) == 1, (sorted(set(got) ^ rels)[:5], got.most_common(2))
        assert led.stats("wj")["queued"] == 0
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        remove_collections(irods, coll)


def test_a_walk_whose_workers_all_died_is_walked_by_the_daemon(tmp_path: Path, redis_server: Any,
                                                                redis_conn: redis.Redis) -> None:
    """The only walk worker is killed mid-chunk and none comes back: once its registration has expired and
    chunk_timeout has passed, the daemon walks the zone itself; every file is queued once."""
    e = Env(tmp_path, redis_server.url, redis_conn, walk_extra='chunk_timeout = "2s"')
    try:
        rels = make_tree(e.root)
        victim = e.spawn("only", hang="d2/e3")
        e.wait_workers(1)
        with DaemonThread(e.config(), e.r) as d:
            hung = Path(hang_marker(str(e.root), "d2/e3"))
            assert wait_for(hung.exists, timeout=30)
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            assert wait_for(lambda: d.daemon.zones["wj"].walks_done >= 1, timeout=60, interval=0.2), \
                "the walk never completed without walk workers"
            time.sleep(0.5)
            q = queued(e.r, e.queue)
            assert d.daemon.walk_jobs is not None and "wj" not in d.daemon.walk_jobs.finished
        hung.unlink()
        assert_once(e, rels, q)
    finally:
        e.stop()


def test_a_walk_whose_keys_redis_lost_is_walked_again(env: Env) -> None:
    """The walk's chunks vanish from Redis (a restart without its data): the daemon does not take the
    empty count for a complete walk; it walks again, and every file is queued once."""
    rels = make_tree(env.root)
    victim = env.spawn("doomed", hang="d4/e0")
    env.wait_workers(1)
    with DaemonThread(env.config(), env.r) as d:
        hung = Path(hang_marker(str(env.root), "d4/e0"))
        assert wait_for(hung.exists, timeout=30)
        first = d.daemon.walk_jobs.runs["wj"].id if d.daemon.walk_jobs else ""
        for k in env.r.keys(keys.walk_chunks_key("ingestd", "wj", "*")):
            env.r.delete(k)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        env.spawn("rescuer")
        assert wait_for(lambda: d.daemon.zones["wj"].walks_done >= 1, timeout=60, interval=0.2)
        time.sleep(0.5)
        q = queued(env.r, env.queue)
        wj = d.daemon.walk_jobs
        assert wj is not None and wj.finished["wj"].id != first, "the walk that lost its keys counted as complete"
    hung.unlink()
    assert_once(env, rels, q)
