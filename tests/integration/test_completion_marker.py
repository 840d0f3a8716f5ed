"""Completion by marker (issue 14.1) through the whole pipeline on the real iRODS: an Illumina-like run
directory is ingested only after its marker, the marker last, and moved as a whole once all of it is verified;
a daemon restart in the middle of a run loses nothing."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import pytest

from irods_ingestd.actions import status
from irods_ingestd.completion import units
from tests.pipeline_harness import names, pipelines, until, write

MARKER = "RTAComplete.txt"
RUN_FILES = ["RunInfo.xml", "RunParameters.xml", "SampleSheet.csv", "InterOp/ExtractionMetricsOut.bin",
             *(f"Data/Intensities/BaseCalls/L00{lane}/C1.1/s_{lane}_110{t}.bcl.gz" for lane in (1, 2) for t in (1, 2))]


@pytest.fixture
def make_pipe(tmp_path: Path, redis_server: Any, redis_conn: Any, irods: Any) -> Any:
    with pipelines(tmp_path, redis_server.url, irods, readable=False, complete_when="marker",
                   marker=MARKER) as make:
        yield make


def test_a_run_directory_is_ingested_after_its_marker_and_moved_whole(make_pipe: Any, tmp_path: Path,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    done = tmp_path / "done"
    pipe = make_pipe(after="move", move_to=str(done), after_hold="0s")
    root = pipe.root
    assert root is not None
    caplog.set_level(logging.INFO, logger="irods_ingestd")
    with pipe:
        for i, rel in enumerate(RUN_FILES):  # written slowly, each settling long before the marker comes
            write(root, f"run1/{rel}", f"{rel} {i}".encode() * 100)
            time.sleep(0.15)
        write(root, "loose.txt", b"a file in no run directory")
        time.sleep(1.5)
        pipe.work()
        assert names(pipe) == set() and pipe.ledger.stats("z")["queued"] == 0, "ingested before the marker"
        assert pipe.daemon is not None and len(pipe.daemon.daemon.zones["z"].gate or ()) == len(RUN_FILES) + 1
        time.sleep(1.1)  # the daemon's status record, written every second
        assert status.gather(pipe.cfg)["zones"]["z"]["awaiting_directory"] == len(RUN_FILES) + 1
        assert f"waiting for their directory (marker/manifest) {len(RUN_FILES) + 1}" in \
            status.render(status.gather(pipe.cfg))
        write(root, f"run1/{MARKER}", b"")
        until(pipe, lambda: (done / "run1").is_dir(), what="the run directory moved")
    want = {f"run1/{rel}" for rel in RUN_FILES} | {f"run1/{MARKER}"}
    assert names(pipe) == want  # the loose file waits for a marker it never gets
    assert not (root / "run1").exists()
    assert sorted(str(p.relative_to(done)) for p in done.rglob("*") if p.is_file()) == sorted(want)
    # the marker is ingested after every other file of its directory was verified
    order = [r.__dict__["fields"]["INGEST_PATH"] for r in caplog.records
             if getattr(r, "fields", {}).get("INGEST_RESULT") == "ingested"]
    assert order[-1].endswith(f"run1/{MARKER}") and len(order) == len(want), order
    assert any("run1/ is complete" in r.getMessage() for r in caplog.records)
    # the ledger holds nothing of the moved directory; no unit is left pending
    assert all(e is None for e in pipe.ledger.get_many("z", sorted(want)))
    assert units.pending(pipe.r, "ingestd", "z") == {}


def test_a_file_that_arrives_during_the_check_holds_the_move(make_pipe: Any, tmp_path: Path) -> None:
    """A file written into a complete directory is ingested too before the directory moves; one still
    open for writing holds it."""
    done = tmp_path / "done"
    pipe = make_pipe(after="move", move_to=str(done), after_hold="0s", marker_ingest="skip")
    root = pipe.root
    assert root is not None
    with pipe:
        write(root, "run2/a.bin", b"a" * 1000)
        write(root, f"run2/{MARKER}", b"")
        with open(root / "run2" / "late.log", "wb") as f:  # a writer still at it
            f.write(b"x" * 100)
            f.flush()
            until(pipe, lambda: "run2/a.bin" in names(pipe), what="a.bin ingested")
            end = time.monotonic() + 12
            while time.monotonic() < end:
                pipe.work()
                time.sleep(0.3)
            assert (root / "run2").is_dir(), "moved while a file in it was still being written"
        until(pipe, lambda: (done / "run2").is_dir(), what="the run directory moved")
    assert names(pipe) == {"run2/a.bin", "run2/late.log"}  # the marker is never ingested (marker_ingest = skip)
    assert (done / "run2" / MARKER).exists()


def test_a_daemon_restart_mid_run_loses_nothing(make_pipe: Any, tmp_path: Path) -> None:
    done = tmp_path / "done"
    pipe = make_pipe(after="move", move_to=str(done), after_hold="0s")
    root = pipe.root
    assert root is not None
    with pipe:  # the first daemon: files held, waiting for their marker
        for rel in RUN_FILES[:4]:
            write(root, f"run3/{rel}", rel.encode() * 50)
        time.sleep(1.0)
    with pipe:  # the second: the marker comes; the files are released and queued, nothing ingested yet
        write(root, f"run3/{MARKER}", b"")
        deadline = time.monotonic() + 20
        while pipe.ledger.stats("z")["queued"] < 4:
            assert time.monotonic() < deadline, pipe.ledger.stats("z")
            time.sleep(0.1)
        pipe.work()  # some of it ingested
        assert "run3" in units.pending(pipe.r, "ingestd", "z")
    with pipe:  # the third: more files arrive in the complete directory; all of it goes in and moves
        for rel in RUN_FILES[4:]:
            write(root, f"run3/{rel}", rel.encode() * 50)
        until(pipe, lambda: (done / "run3").is_dir(), what="the run directory moved")
    assert names(pipe) == {f"run3/{rel}" for rel in RUN_FILES} | {f"run3/{MARKER}"}
    s = status.gather(pipe.cfg)["zones"]["z"]
    assert s["failed"] == 0 and s.get("directories") == []


def test_keep_zone_with_marker_ingests_only_after_it(make_pipe: Any) -> None:
    pipe = make_pipe()
    root = pipe.root
    assert root is not None
    with pipe:
        write(root, "run4/x/y.bin", os.urandom(2000))
        time.sleep(1.5)
        pipe.work()
        assert names(pipe) == set()
        write(root, f"run4/{MARKER}", b"done")
        until(pipe, lambda: names(pipe) == {"run4/x/y.bin", f"run4/{MARKER}"}, what="all of run4 in iRODS")
        until(pipe, lambda: units.pending(pipe.r, "ingestd", "z") == {}, what="the directory complete")
    assert (root / "run4" / "x" / "y.bin").exists()  # keep: nothing moves


def test_a_delete_zone_deletes_a_run_only_once_all_of_it_is_verified(make_pipe: Any) -> None:
    pipe = make_pipe(after="delete", after_hold="0s")
    root = pipe.root
    assert root is not None
    with pipe:
        write(root, "run5/a.bin", b"a" * 100)
        write(root, "run5/b/c.bin", b"c" * 100)
        write(root, f"run5/{MARKER}", b"")
        until(pipe, lambda: "run5/a.bin" in names(pipe), what="a.bin ingested")
        until(pipe, lambda: not any(p.is_file() for p in (root / "run5").rglob("*")), what="the run's files deleted")
    assert names(pipe) == {"run5/a.bin", "run5/b/c.bin", f"run5/{MARKER}"}


def test_a_run_directory_stays_for_after_hold_once_all_of_it_is_verified(make_pipe: Any, tmp_path: Path) -> None:
    done = tmp_path / "done"
    pipe = make_pipe(after="move", move_to=str(done), after_hold="4s")
    root = pipe.root
    assert root is not None
    with pipe:
        write(root, "run6/a.bin", b"a" * 100)
        write(root, f"run6/{MARKER}", b"")
        until(pipe, lambda: f"run6/{MARKER}" in names(pipe), what="the marker ingested")
        verified = time.monotonic()
        until(pipe, lambda: (done / "run6").is_dir(), what="the run directory moved")
        assert time.monotonic() - verified >= 3.0  # not before after_hold (less the look's own delay)
    assert (done / "run6" / "a.bin").read_bytes() == b"a" * 100


def test_a_completed_run_sends_one_completed_webhook(make_pipe: Any, tmp_path: Path) -> None:
    from irods_ingestd import notify
    from tests.webhook_receiver import Receiver

    done = tmp_path / "done"
    with Receiver() as rx:
        pipe = make_pipe(after="move", move_to=str(done), after_hold="0s", webhook=rx.url())
        root = pipe.root
        assert root is not None
        with pipe:
            write(root, "run4/a.bin", b"a" * 100)
            write(root, "run4/sub/b.bin", b"b" * 50)
            write(root, f"run4/{MARKER}", b"")
            until(pipe, lambda: (done / "run4").is_dir(), what="the run directory moved")
            assert notify.flush(10)
            time.sleep(0.5)
            pipe.work()
        assert notify.flush(10)
        docs = [d for d in rx.docs if d["event"] == "completed"]
    assert len(docs) == 1, rx.docs
    d = docs[0]
    assert (d["zone"], d["unit"], d["kind"], d["files"], d["bytes"]) == ("z", "run4", "marker", 3, 150)
    assert d["path"] == str(root / "run4") and d["object"] == f"{pipe.collection}/run4"
    assert d["moved_to"] == str(done / "run4")
