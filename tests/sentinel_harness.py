"""Redis under Sentinel for the tests: a master, a replica and three sentinels (Debian's `redis-server`, the
sentinels as `redis-server FILE --sentinel`), on free TCP ports of 127.0.0.1 in a temporary directory.

`failover()` asks a sentinel to promote the replica (SENTINEL FAILOVER) and waits until every sentinel names
the new master and it accepts writes (`wait_demoted` then waits for the old one to replicate it);
`kill_master()` kills the master's process instead (the sentinels then need `down_after` to agree it is down).
`stop()` kills every process it started, whatever state they are in.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from tests.redis_harness import free_port

MASTER_NAME = "mymaster"


@dataclass
class SentinelCluster:
    workdir: Path
    down_after_ms: int = 1000
    master_name: str = MASTER_NAME
    servers: dict[int, subprocess.Popen] = field(default_factory=dict)  # data nodes by port
    sentinels: dict[int, subprocess.Popen] = field(default_factory=dict)

    @property
    def sentinel_addrs(self) -> list[str]:
        return [f"127.0.0.1:{p}" for p in self.sentinels]

    def _exe(self) -> str:
        exe = shutil.which("redis-server")
        if not exe:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        return exe

    def _server(self, port: int, *extra: str) -> None:
        d = self.workdir / f"redis-{port}"
        d.mkdir(parents=True, exist_ok=True)
        self.servers[port] = subprocess.Popen(
            [self._exe(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(d), "--daemonize", "no",
             "--save", "", "--appendonly", "no", "--loglevel", "warning", "--logfile", str(d / "redis.log"),
             *extra], stdin=subprocess.DEVNULL)
        _wait(lambda: redis.Redis(port=port).ping(), f"redis-server on port {port}")

    def _sentinel(self, port: int, master_port: int) -> None:
        d = self.workdir / f"sentinel-{port}"
        d.mkdir(parents=True, exist_ok=True)
        conf = d / "sentinel.conf"  # a sentinel rewrites its file: one each, writable
        conf.write_text(f"port {port}\nbind 127.0.0.1\ndir {d}\nlogfile {d / 'sentinel.log'}\n"
                        f"sentinel monitor {self.master_name} 127.0.0.1 {master_port} 2\n"
                        f"sentinel down-after-milliseconds {self.master_name} {self.down_after_ms}\n"
                        f"sentinel failover-timeout {self.master_name} 10000\n"
                        f"sentinel parallel-syncs {self.master_name} 1\n")
        self.sentinels[port] = subprocess.Popen([self._exe(), str(conf), "--sentinel"], stdin=subprocess.DEVNULL)
        _wait(lambda: redis.Redis(port=port).ping(), f"sentinel on port {port}")

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            master = free_port()
            self._server(master)
            replica = free_port()
            self._server(replica, "--replicaof", "127.0.0.1", str(master))
            _wait(lambda: redis.Redis(port=replica).info("replication").get("master_link_status") == "up",
                  "the replica's link to the master")
            for _ in range(3):
                self._sentinel(free_port(), master)
        except BaseException:
            self.stop()
            raise

    def _knows_all(self, port: int) -> bool:
        s = redis.Redis(port=port, decode_responses=True)
        m = s.execute_command("SENTINEL", "MASTER", self.master_name)
        info = dict(zip(m[::2], m[1::2], strict=True)) if isinstance(m, list) else m
        return int(info["num-slaves"]) >= 1 and int(info["num-other-sentinels"]) >= 2

    def master_port(self, via: int | None = None) -> int:
        port = via or next(iter(self.sentinels))
        addr = redis.Redis(port=port).execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name)
        return int(addr[1])

    def master(self) -> redis.Redis:
        return redis.Redis(port=self.master_port())

    def _all_agree(self, old: int) -> bool:
        ports = {self.master_port(p) for p in self.sentinels}
        if len(ports) != 1 or old in ports:
            return False
        r = redis.Redis(port=ports.pop())
        return r.info("replication")["role"] == "master" and bool(r.set("sentinel-harness:probe", 1))

    def ready(self, timeout: float = 20.0) -> None:
        """Every sentinel knows the replica and the other sentinels (they find each other through hello
        messages every 2 s): only then may a failover be asked, or a master's death be agreed on."""
        _wait(lambda: all(self._knows_all(p) for p in self.sentinels), "the sentinels to find each other", timeout)

    def failover(self, timeout: float = 20.0) -> int:
        """Promote the replica; returns the new master's port once every sentinel names it."""
        self.ready()
        old = self.master_port()
        redis.Redis(port=next(iter(self.sentinels))).execute_command("SENTINEL", "FAILOVER", self.master_name)
        _wait(lambda: self._all_agree(old), "the sentinels to agree on the new master", timeout)
        return self.master_port()

    def wait_demoted(self, port: int, timeout: float = 30.0) -> None:
        """Wait until the server on `port` (a master failed over alive) replicates the new master: Sentinel
        demotes it some seconds after the failover (until then it still takes writes of its own)."""
        def synced() -> bool:
            info = redis.Redis(port=port).info("replication")
            return info["role"] == "slave" and info.get("master_port") == self.master_port() and \
                info.get("master_link_status") == "up"
        _wait(synced, f"the old master on port {port} to replicate the new one", timeout)

    def kill_master(self, timeout: float = 30.0) -> int:
        self.ready()
        old = self.master_port()
        p = self.servers.pop(old)
        p.kill()
        p.wait(10)
        _wait(lambda: self._all_agree(old), "the sentinels to fail the killed master over", timeout)
        return self.master_port()

    def stop(self) -> None:
        for procs in (self.sentinels, self.servers):
            for p in procs.values():
                if p.poll() is None:
                    p.kill()
            for p in procs.values():
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(10)
            procs.clear()


def _wait(cond: object, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if cond():  # type: ignore[operator]
                return
        except (redis.RedisError, OSError, KeyError, ValueError) as e:
            last = e
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}" + (f" ({last})" if last else ""))


@pytest.fixture(name="sentinel_cluster")
def sentinel_cluster_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelCluster]:
    """A master, a replica and three sentinels; every process killed at the end."""
    c = SentinelCluster(Path(tmp_path_factory.mktemp("sentinel")))
    c.start()
    try:
        yield c
    finally:
        c.stop()
