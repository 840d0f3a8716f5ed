"""Shared fixtures: a real redis-server and the iRODS test server (or a real iRODS, see the README)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.redis_harness import RedisServerProcess

try:
    from tests.irods_server.pytest_plugin import *  # noqa: F401,F403
except ImportError:  # the test server is not there yet
    pass


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServerProcess]:
    server = RedisServerProcess(Path(tmp_path_factory.mktemp("redis")))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_conn(redis_server: RedisServerProcess) -> Iterator[redis.Redis]:
    """A client to an emptied Redis."""
    if redis_server.proc is None or redis_server.proc.poll() is not None:
        redis_server.start()
    r = redis_server.client()
    r.flushall()
    yield r
    r.close()


# --- no test leaves a process behind --------------------------------------------------------------
# Every process the tests start inherits this variable; at the end of the session any that still runs
# (an orphaned worker, daemon, server) is listed, killed, and fails the session.
RUN_MARK = "INGESTD_TEST_RUN"


def _marked_processes(mark: str) -> list[tuple[int, str]]:
    found = []
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if f"{RUN_MARK}={mark}".encode() not in f.read().split(b"\0"):
                    continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
            with open(f"/proc/{entry}/stat", "rb") as f:
                if f.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                    continue  # a zombie holds nothing
        except OSError:
            continue
        found.append((int(entry), cmd))
    return found


def pytest_sessionstart(session: pytest.Session) -> None:
    os.environ[RUN_MARK] = f"{os.getpid()}-{time.time_ns()}"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    mark = os.environ.get(RUN_MARK)
    if not mark:
        return
    left = _marked_processes(mark)
    deadline = time.monotonic() + 5
    while left and time.monotonic() < deadline:  # give processes that are stopping a moment
        time.sleep(0.2)
        left = _marked_processes(mark)
    if not left:
        return
    for pid, _cmd in left:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    text = "\n".join(f"  pid {pid}: {cmd}" for pid, cmd in left)
    session.config.get_terminal_writer().line(f"\nFAILED: tests left {len(left)} processes running (killed now):\n"
                                              f"{text}", red=True)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The stand-in's second pass (`make test` after the real server's pass: INGESTD_SECOND_PASS=1) runs only
    the tests that talked to the real server in the first pass: the others (no iRODS at all, or marked
    `standin`: on the stand-in in both passes) would run again exactly as before; those marked `realonly`
    (the break-it probes of the product, tests/integration/test_adv_*.py) ask the product, not the stand-in's
    likeness to the server, and the first pass already asked the real server."""
    if not os.environ.get("INGESTD_SECOND_PASS"):
        return
    def talks_to_irods(it: pytest.Item) -> bool:
        return bool({"irods", "irods_server"} & set(getattr(it, "fixturenames", ()))) and \
            it.get_closest_marker("standin") is None and it.get_closest_marker("realonly") is None

    keep = [it for it in items if talks_to_irods(it)]
    gone = [it for it in items if not talks_to_irods(it)]
    if gone:
        config.hook.pytest_deselected(items=gone)
        items[:] = keep
