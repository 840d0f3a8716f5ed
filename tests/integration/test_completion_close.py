"""complete_when = "close" (issue 14.1) through the whole pipeline on the real iRODS: a file its writer closed
is ingested after close_settle, long before the zone's settle; a file still held open for writing never is."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from irods.models import DataObject

from irods_ingestd.watch.fanotify_sys import unavailable
from tests.pipeline_harness import Pipeline, names

SETTLE = 30.0


def work_until(pipe: Pipeline, want: set[str], timeout: float) -> float:
    t0 = time.monotonic()
    while not want <= names(pipe):
        assert time.monotonic() - t0 < timeout, f"{want - names(pipe)} not ingested in {timeout}s"
        pipe.work()
        time.sleep(0.1)
    return time.monotonic() - t0


@pytest.fixture(params=["inotify", "fanotify"])
def pipe(request: Any, tmp_path: Path, redis_server: Any, redis_conn: Any, irods: Any) -> Any:
    if request.param == "fanotify" and (why := unavailable(str(tmp_path))):
        pytest.skip(f"fanotify: {why}")
    p = Pipeline(tmp_path, redis_server.url, irods, zone={"complete_when": "close", "close_settle": "0.3s",
                                                           "settle": f"{SETTLE:g}s", "watcher": request.param})
    yield p
    p.__exit__(None, None, None)
    p.cleanup()


def test_a_closed_file_goes_in_long_before_settle_an_open_one_never(pipe: Pipeline) -> None:
    root = pipe.root
    assert root is not None
    with pipe:
        time.sleep(0.3)
        held = open(root / "open.log", "wb")  # noqa: SIM115 - held open across the test on purpose
        try:
            held.write(b"still writing\n")
            held.flush()
            (root / "sub").mkdir()
            with open(root / "sub" / "closed.dat", "wb") as f:
                f.write(b"x" * 10_000)
            took = work_until(pipe, {"sub/closed.dat"}, timeout=SETTLE / 3)
            assert took < SETTLE / 3
            end = time.monotonic() + 5
            while time.monotonic() < end:  # a rescan every second finds it too: still never ready while open
                pipe.work()
                time.sleep(0.2)
            assert "open.log" not in names(pipe)
            assert pipe.daemon is not None and pipe.daemon.daemon.settler.is_settling("z", "open.log")
            held.write(b"more\n")
        finally:
            held.close()
        work_until(pipe, {"open.log"}, timeout=SETTLE / 3)  # closed now: in after close_settle
    objs = {p.rsplit("/", 1)[-1]: row for p, row in pipe.objects().items()}
    assert objs["open.log"][DataObject.size] == len(b"still writing\nmore\n")


def test_an_open_file_is_not_ready_even_after_settle(tmp_path: Path, redis_server: Any, redis_conn: Any,
                                                     irods: Any) -> None:
    """Unlike a settle zone, a "close" zone never takes a file some process still holds open for writing, however
    long its writer pauses."""
    p = Pipeline(tmp_path, redis_server.url, irods, zone={"complete_when": "close", "close_settle": "0.2s",
                                                           "settle": "1s"})
    root = p.root
    assert root is not None
    try:
        with p:
            time.sleep(0.3)
            with open(root / "paused.log", "wb") as held:
                held.write(b"line 1\n")
                held.flush()
                end = time.monotonic() + 6  # six times the settle
                while time.monotonic() < end:
                    p.work()
                    time.sleep(0.3)
                assert "paused.log" not in names(p)
                held.write(b"line 2\n")
            work_until(p, {"paused.log"}, timeout=10)
        (row,) = p.objects().values()
        assert row[DataObject.size] == len(b"line 1\nline 2\n")
    finally:
        p.__exit__(None, None, None)
        p.cleanup()
