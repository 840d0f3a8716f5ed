"""Session 5 probe, completion: marker and manifest directories, the directory as the unit of the after-action,
the completed-run webhook, and complete_when = "close", against the promise (every complete file once, never
half-written, nothing passed on half-delivered, failures in `status` with their reason, the journal naming zone
and file).

Whole pipeline (daemon thread, real RQ workers in bursts, real Redis, the real iRODS). Cases already in
tests/integration/test_completion_*.py (a run moved whole, the marker last, a writer holding the move, restarts,
a wrong sum, a missing file, a bad manifest, a corrected manifest) and in test_adv_names*.py (manifest names
with spaces, backslashes, newlines, non-UTF-8) and test_adv_writers3.py (a manifest swapped for a FIFO) are not
repeated here.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from irods.models import DataObject

from irods_ingestd.actions import status
from irods_ingestd.completion import units
from tests.pipeline_harness import Pipeline, names, pipelines, until, write

pytestmark = pytest.mark.realonly

MARKER = "RTAComplete.txt"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def checksums(pipe: Pipeline) -> dict[str, str]:
    return {p[len(pipe.collection) + 1:]: row[DataObject.checksum] for p, row in pipe.objects().items()}


def sha2(data: bytes) -> str:
    from tests.expect import sha2 as s

    return str(s(data))


def zone_status(pipe: Pipeline) -> dict[str, Any]:
    return dict(status.gather(pipe.cfg)["zones"][pipe.name])


def work_for(pipe: Pipeline, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pipe.work()
        time.sleep(0.2)


def journal(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if text in r.getMessage()]


@pytest.fixture
def marker_pipe(tmp_path: Path, redis_server: Any, redis_conn: Any, irods: Any) -> Any:
    with pipelines(tmp_path, redis_server.url, irods, readable=False, complete_when="marker",
                   marker=MARKER) as make:
        yield make


@pytest.fixture
def manifest_pipe(tmp_path: Path, redis_server: Any, redis_conn: Any, irods: Any) -> Any:
    with pipelines(tmp_path, redis_server.url, irods, readable=False, complete_when="manifest",
                   manifest="*.sha256") as make:
        yield make


# --- manifests ------------------------------------------------------------------------------------------------
def test_a_manifest_that_lists_itself_completes_its_set(manifest_pipe: Any, tmp_path: Path) -> None:
    """`sha256sum * > MANIFEST.sha256` lists the manifest itself, with the sum of the empty file the shell had
    just created: that line cannot be a sum of the manifest (no file holds its own sum); the set must not be
    held for ever for it."""
    done = tmp_path / "done"
    pipe = manifest_pipe(after="move", move_to=str(done), after_hold="0s")
    root = pipe.root
    files = {"a.dat": b"a" * 300, "b.dat": b"b" * 200}
    with pipe:
        for rel, data in files.items():
            write(root, f"d1/{rel}", data)
        text = "".join(f"{sha(data)}  {rel}\n" for rel, data in sorted({**files, "MANIFEST.sha256": b""}.items()))
        write(root, "d1/MANIFEST.sha256", text)
        until(pipe, lambda: (done / "d1").is_dir(), what="the delivery moved")
    assert names(pipe) == {"d1/a.dat", "d1/b.dat", "d1/MANIFEST.sha256"}
    assert zone_status(pipe)["failed"] == 0


def test_a_listed_file_the_zone_skips_or_a_directory_is_said_to_be_so_not_missing(manifest_pipe: Any) -> None:
    """A manifest lists a file the zone's temp_patterns skip (`*.part`) and a directory: both are there, so
    `status` must not call them missing; it says which pattern skips the one and that the other is a directory."""
    pipe = manifest_pipe()
    root = pipe.root
    with pipe:
        write(root, "d9/a.dat", b"a")
        write(root, "d9/b.part", b"b")
        write(root, "d9/sub/x.dat", b"x")
        write(root, "d9/MANIFEST.sha256", f"{sha(b'a')}  a.dat\n{sha(b'b')}  b.part\n{sha(b'x')}  sub/x.dat\n"
                                          f"{sha(b'')}  sub\n")
        work_for(pipe, 6)
        dirs = zone_status(pipe)["directories"]
    assert names(pipe) == set()
    assert dirs and dirs[0]["path"] == "d9/", dirs
    assert "d9/b.part (there, but skipped by the zone: temporary name (temp_patterns '*.part'))" in \
        dirs[0]["reason"] and "d9/sub (a directory)" in dirs[0]["reason"], dirs


def test_a_listed_file_the_zone_excludes_counts_as_present_and_goes_with_the_set(
        manifest_pipe: Any, tmp_path: Path) -> None:
    """`sha256sum * > MANIFEST.sha256` lists the run's log too, which the zone excludes: the set is not held for
    ever for it; the log is not ingested and moves with the set."""
    done = tmp_path / "done"
    pipe = manifest_pipe(after="move", move_to=str(done), after_hold="0s", exclude=["*.log"])
    root = pipe.root
    with pipe:
        write(root, "d10/a.dat", b"a")
        write(root, "d10/run.log", b"log")
        write(root, "d10/MANIFEST.sha256", f"{sha(b'a')}  a.dat\n{sha(b'log')}  run.log\n")
        until(pipe, lambda: (done / "d10").is_dir(), what="the set moved")
    assert names(pipe) == {"d10/a.dat", "d10/MANIFEST.sha256"}
    assert (done / "d10" / "run.log").read_bytes() == b"log"


@pytest.mark.slow
def test_mixed_md5_and_sha256_lines_are_each_checked(manifest_pipe: Any, tmp_path: Path) -> None:
    done = tmp_path / "done"
    pipe = manifest_pipe(after="move", move_to=str(done), after_hold="0s")
    root = pipe.root
    with pipe:
        write(root, "d3/a.dat", b"A" * 100)
        write(root, "d3/b.dat", b"B" * 100)
        write(root, "d3/c.dat", b"C" * 100)
        write(root, "d3/MANIFEST.sha256", f"{hashlib.md5(b'A' * 100).hexdigest()}  a.dat\n"
                                          f"{sha(b'B' * 100)} *b.dat\n"
                                          f"{hashlib.md5(b'wrong').hexdigest()}  c.dat\n")
        until(pipe, lambda: zone_status(pipe)["failed"] == 1, what="c.dat failed")
        until(pipe, lambda: any(d["state"] == "held" for d in zone_status(pipe)["directories"]), what="held")
        work_for(pipe, 1)
        s = zone_status(pipe)
    (failed,) = s["failed_files"]
    assert failed["path"] == "d3/c.dat" and "md5 mismatch" in failed["reason"]
    assert names(pipe) == {"d3/a.dat", "d3/b.dat", "d3/MANIFEST.sha256"}
    assert not done.exists() and (root / "d3" / "c.dat").exists()


def test_a_manifest_read_while_still_being_written_verifies_every_file_it_finally_lists(
        manifest_pipe: Any, tmp_path: Path) -> None:
    """The writer of the manifest pauses longer than settle after its first line: the set is taken as the
    first line says. The lines written later must still be checked before anything of the set is passed on:
    a file listed later with a sum its bytes do not have must not be moved out with the rest."""
    done = tmp_path / "done"
    pipe = manifest_pipe(after="move", move_to=str(done), after_hold="0s")
    root = pipe.root
    with pipe:
        write(root, "d4/a.dat", b"a" * 100)
        write(root, "d4/b.dat", b"b" * 100)
        m = root / "d4" / "MANIFEST.sha256"
        with open(m, "w") as f:
            f.write(f"{sha(b'a' * 100)}  a.dat\n")
            f.flush()
            until(pipe, lambda: "d4/a.dat" in names(pipe), what="the first listed file in")
            f.write(f"{sha(b'not b')}  b.dat\n")  # b's bytes do not have this sum
        work_for(pipe, 8)
        s = zone_status(pipe)
    assert not (done / "d4").exists(), "a set with a file that does not match its manifest was moved"
    assert (root / "d4" / "b.dat").exists()
    assert [f["path"] for f in s["failed_files"] if "sha256 mismatch" in f["reason"]] == ["d4/b.dat"], s
    assert any(d["state"] == "held" and "d4/b.dat" in d["reason"] for d in s["directories"]), s


@pytest.mark.slow
def test_a_listed_file_that_never_arrives_is_in_status_and_the_journal(manifest_pipe: Any,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="irods_ingestd")
    pipe = manifest_pipe(after="delete", after_hold="0s")
    root = pipe.root
    with pipe:
        write(root, "d5/a.dat", b"a")
        write(root, "d5/extra.txt", b"not listed")
        write(root, "d5/MANIFEST.sha256", f"{sha(b'a')}  a.dat\n{sha(b'never')}  never.dat\n")
        work_for(pipe, 7)
        dirs = zone_status(pipe)["directories"]
    assert names(pipe) == set() and (root / "d5" / "a.dat").exists() and (root / "d5" / "extra.txt").exists()
    assert dirs and dirs[0]["state"] == "incomplete" and "d5/never.dat" in dirs[0]["reason"], dirs
    recs = journal(caplog, "never.dat")
    assert recs and all(r.__dict__["fields"]["INGEST_ZONE"] == "z" for r in recs)
    assert recs[0].__dict__["fields"]["INGEST_PATH"] == str(root / "d5" / "MANIFEST.sha256")


@pytest.mark.slow
def test_an_unlisted_file_goes_with_the_set(manifest_pipe: Any, tmp_path: Path) -> None:
    done = tmp_path / "done"
    pipe = manifest_pipe(after="move", move_to=str(done), after_hold="0s")
    root = pipe.root
    with pipe:
        write(root, "d6/a.dat", b"a")
        write(root, "d6/extra.txt", b"not listed")
        write(root, "d6/MANIFEST.sha256", f"{sha(b'a')}  a.dat\n")
        until(pipe, lambda: (done / "d6").is_dir(), what="the set moved")
    assert names(pipe) == {"d6/a.dat", "d6/extra.txt", "d6/MANIFEST.sha256"}
    assert (done / "d6" / "extra.txt").read_bytes() == b"not listed"


# --- markers --------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_run_directory_of_the_same_name_after_the_first_moved_waits_for_its_own_marker(
        marker_pipe: Any, tmp_path: Path) -> None:
    """A run moved away whole; a new run directory of the same name arrives (a re-delivery): it is a new
    directory and its files wait for its own marker."""
    done = tmp_path / "done"
    pipe = marker_pipe(after="move", move_to=str(done), after_hold="0s")
    root = pipe.root
    with pipe:
        write(root, "run1/a.bin", b"first")
        write(root, f"run1/{MARKER}", b"")
        until(pipe, lambda: (done / "run1").is_dir(), what="the first run moved")
        write(root, "run1/b.bin", b"second delivery")
        work_for(pipe, 3)
        assert "run1/b.bin" not in names(pipe), "a file of a new run directory went in before its marker"
        write(root, f"run1/{MARKER}", b"")
        until(pipe, lambda: (done / "run1.~1~").is_dir(), what="the second run moved")
    assert names(pipe) == {"run1/a.bin", f"run1/{MARKER}", "run1/b.bin"}
    assert (done / "run1.~1~" / "b.bin").read_bytes() == b"second delivery"
    assert (done / "run1" / "a.bin").read_bytes() == b"first"


def test_nested_markers_inner_first_each_file_once_and_nothing_left_behind(marker_pipe: Any, tmp_path: Path) -> None:
    done = tmp_path / "done"
    pipe = marker_pipe(after="move", move_to=str(done), after_hold="0s")
    root = pipe.root
    with pipe:
        write(root, "run2/lane1/a.bin", b"a" * 10)
        write(root, "run2/top.bin", b"t" * 10)
        write(root, f"run2/lane1/{MARKER}", b"inner")
        until(pipe, lambda: "run2/lane1/a.bin" in names(pipe) or not (root / "run2" / "lane1").exists(),
              what="the inner run")
        write(root, f"run2/{MARKER}", b"outer")
        until(pipe, lambda: not (root / "run2").exists() and not units.pending(pipe.r, "ingestd", "z"),
              what="the outer run moved")
    moved = sorted(str(p.relative_to(done)) for p in done.rglob("*") if p.is_file())
    assert moved == sorted(["run2/lane1/a.bin", f"run2/lane1/{MARKER}", "run2/top.bin", f"run2/{MARKER}"]), moved
    assert names(pipe) == {"run2/lane1/a.bin", f"run2/lane1/{MARKER}", "run2/top.bin", f"run2/{MARKER}"}
    assert zone_status(pipe)["failed"] == 0


@pytest.mark.slow
def test_move_to_already_holding_the_run_gets_a_numbered_name_and_the_webhook_says_so(
        marker_pipe: Any, tmp_path: Path) -> None:
    from irods_ingestd import notify
    from tests.webhook_receiver import Receiver

    done = tmp_path / "done"
    (done / "run3").mkdir(parents=True)
    (done / "run3" / "a.bin").write_bytes(b"someone else's")
    with Receiver() as rx:
        pipe = marker_pipe(after="move", move_to=str(done), after_hold="0s", webhook=rx.url())
        root = pipe.root
        with pipe:
            write(root, "run3/a.bin", b"ours")
            write(root, f"run3/{MARKER}", b"")
            until(pipe, lambda: (done / "run3.~1~").is_dir(), what="the run moved")
            assert notify.flush(10)
        docs = [d for d in rx.docs if d["event"] == "completed"]
    assert (done / "run3" / "a.bin").read_bytes() == b"someone else's"
    assert (done / "run3.~1~" / "a.bin").read_bytes() == b"ours" and not (root / "run3").exists()
    assert len(docs) == 1 and docs[0]["moved_to"] == str(done / "run3.~1~"), docs


def test_a_run_never_moves_into_a_move_to_directory_leading_back_into_the_zone(
        marker_pipe: Any, tmp_path: Path) -> None:
    """done/batch -> landing/batch (a symlink made there later): the run stays where it is, held with the reason
    in status; once the link is gone it moves."""
    done = tmp_path / "done"
    done.mkdir()
    pipe = marker_pipe(after="move", move_to=str(done), after_hold="0s")
    root = pipe.root
    (root / "batch").mkdir()
    (done / "batch").symlink_to(root / "batch")
    with pipe:
        write(root, "batch/run12/a.bin", b"a")
        write(root, f"batch/run12/{MARKER}", b"")
        until(pipe, lambda: any(d["state"] == "held" for d in zone_status(pipe)["directories"]), what="held")
        (held,) = zone_status(pipe)["directories"]
        assert "leads back into the zone" in held["reason"], held
        assert sorted(str(p.relative_to(root)) for p in root.rglob("*")) == \
            ["batch", "batch/run12", f"batch/run12/{MARKER}", "batch/run12/a.bin"]
        (done / "batch").unlink()
        units.recheck_in(pipe.r, "ingestd", "z", "batch/run12", 0)  # not the 30 s a held run waits
        until(pipe, lambda: (done / "batch" / "run12").is_dir(), what="the run moved")
    assert names(pipe) == {"batch/run12/a.bin", f"batch/run12/{MARKER}"}


@pytest.mark.slow
def test_a_run_directory_renamed_mid_ingest_goes_in_under_its_new_name(marker_pipe: Any, tmp_path: Path) -> None:
    done = tmp_path / "done"
    pipe = marker_pipe(after="move", move_to=str(done), after_hold="0s")
    root = pipe.root
    with pipe:
        for i in range(6):
            write(root, f"run4/f{i}.bin", bytes([65 + i]) * 100)
        write(root, f"run4/{MARKER}", b"")
        deadline = time.monotonic() + 20
        while pipe.ledger.stats("z")["queued"] < 6:
            assert time.monotonic() < deadline, pipe.ledger.stats("z")
            time.sleep(0.05)
        os.rename(root / "run4", root / "run4b")  # before any worker ran
        until(pipe, lambda: (done / "run4b").is_dir(), what="the renamed run moved")
        work_for(pipe, 1)
        s = zone_status(pipe)
    assert {n for n in names(pipe) if n.startswith("run4b/")} == {f"run4b/f{i}.bin" for i in range(6)} | \
        {f"run4b/{MARKER}"}
    assert not {n for n in names(pipe) if n.startswith("run4/")}
    assert s["directories"] == [] and units.pending(pipe.r, "ingestd", "z") == {}


@pytest.mark.slow
def test_a_run_directory_removed_mid_ingest_is_forgotten(marker_pipe: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="irods_ingestd")
    pipe = marker_pipe()
    root = pipe.root
    with pipe:
        for i in range(4):
            write(root, f"run5/f{i}.bin", b"x" * 100)
        write(root, f"run5/{MARKER}", b"")
        until(pipe, lambda: "run5" in units.pending(pipe.r, "ingestd", "z"), what="the run complete")
        shutil.rmtree(root / "run5")
        until(pipe, lambda: units.pending(pipe.r, "ingestd", "z") == {}, what="the unit forgotten")
        write(root, "other/x.bin", b"x")
        write(root, f"other/{MARKER}", b"")
        until(pipe, lambda: f"other/{MARKER}" in names(pipe), what="another run goes in")
        s = zone_status(pipe)
    assert s["directories"] == [] and s["failed"] == 0, s


@pytest.mark.slow
def test_files_arriving_in_a_complete_keep_run_later_go_in_also_after_a_restart(marker_pipe: Any) -> None:
    pipe = marker_pipe()
    root = pipe.root
    with pipe:
        write(root, "run6/a.bin", b"a")
        write(root, f"run6/{MARKER}", b"")
        until(pipe, lambda: f"run6/{MARKER}" in names(pipe), what="the run in")
        until(pipe, lambda: units.pending(pipe.r, "ingestd", "z") == {}, what="the run done")
        write(root, "run6/late1.bin", b"late 1")
        until(pipe, lambda: "run6/late1.bin" in names(pipe), what="a late file in")
    with pipe:
        write(root, "run6/sub/late2.bin", b"late 2")
        until(pipe, lambda: "run6/sub/late2.bin" in names(pipe), what="a late file after a restart")
    assert checksums(pipe)["run6/sub/late2.bin"] == sha2(b"late 2")
    assert names(pipe) == {"run6/a.bin", f"run6/{MARKER}", "run6/late1.bin", "run6/sub/late2.bin"}


def test_a_marker_in_the_zone_root_is_reported_with_zone_and_file_and_not_ingested(
        marker_pipe: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="irods_ingestd")
    pipe = marker_pipe()
    root = pipe.root
    with pipe:
        write(root, "loose.bin", b"x")
        write(root, MARKER, b"")
        work_for(pipe, 3)
    assert names(pipe) == set()
    recs = journal(caplog, "root is not honoured")
    assert len(recs) == 1, [r.getMessage() for r in recs]  # once, not at each rescan
    assert recs[0].__dict__["fields"]["INGEST_ZONE"] == "z" and recs[0].__dict__["fields"]["INGEST_PATH"] == MARKER


@pytest.mark.slow
def test_a_marker_written_while_a_file_is_still_being_written_is_ingested_after_its_whole_version(
        marker_pipe: Any, tmp_path: Path) -> None:
    done = tmp_path / "done"
    pipe = marker_pipe(after="move", move_to=str(done), after_hold="0s")
    root = pipe.root
    with pipe:
        write(root, "run7/a.bin", b"a" * 100)
        (root / "run7" / "slow.log").parent.mkdir(exist_ok=True)
        with open(root / "run7" / "slow.log", "wb") as f:
            f.write(b"first\n")
            f.flush()
            write(root, f"run7/{MARKER}", b"")
            for i in range(15):  # keeps writing well past the marker, never pausing as long as settle
                time.sleep(0.1)
                f.write(b"line %d\n" % i)
                f.flush()
                if i % 3 == 0:
                    pipe.work()
            assert f"run7/{MARKER}" not in names(pipe), "the marker went in while a file was still being written"
        want = b"first\n" + b"".join(b"line %d\n" % i for i in range(15))
        until(pipe, lambda: (done / "run7").is_dir(), what="the run moved")
    assert checksums(pipe)["run7/slow.log"] == sha2(want)
    assert names(pipe) == {"run7/a.bin", "run7/slow.log", f"run7/{MARKER}"}


def test_a_copy_tools_leftover_temporary_file_holds_the_move_and_status_says_which(
        marker_pipe: Any, tmp_path: Path) -> None:
    """A crashed rsync left `.b.bin.Xy12Zq` in the run: the run is not moved while it is there (something may
    still be writing), and `status` says which file holds it; once it goes, the run moves."""
    done = tmp_path / "done"
    pipe = marker_pipe(after="move", move_to=str(done), after_hold="0s")
    root = pipe.root
    with pipe:
        write(root, "run10/a.bin", b"a")
        write(root, "run10/.b.bin.Xy12Zq", b"half")
        write(root, f"run10/{MARKER}", b"")
        until(pipe, lambda: f"run10/{MARKER}" not in names(pipe) and "run10/a.bin" in names(pipe), what="a.bin")
        until(pipe, lambda: any("run10/.b.bin.Xy12Zq" in d["reason"] for d in zone_status(pipe)["directories"]),
              what="status says which file holds the run")
        work_for(pipe, 1)
        assert (root / "run10").is_dir() and not done.exists()
        (root / "run10" / ".b.bin.Xy12Zq").unlink()
        until(pipe, lambda: (done / "run10").is_dir(), what="the run moved")
    assert names(pipe) == {"run10/a.bin", f"run10/{MARKER}"}


@pytest.mark.parametrize("then_retry", [False, pytest.param(True, marks=pytest.mark.slow)])  # held: 30 s a look
def test_a_marker_that_cannot_be_ingested_holds_its_run_with_the_reason_not_retried_for_ever(
        marker_pipe: Any, tmp_path: Path, irods: Any, caplog: pytest.LogCaptureFixture, then_retry: bool) -> None:
    """marker_ingest = "last": an object someone else put where the marker goes (a conflict). The run's files
    go in; the run is held with the marker's reason in `status` (its failure too), not tried every few seconds
    for ever; once the object is out of the way, `retry` lets the marker in and the run moves."""
    caplog.set_level(logging.INFO, logger="irods_ingestd")
    done = tmp_path / "done"
    pipe = marker_pipe(after="move", move_to=str(done), after_hold="0s")
    root = pipe.root
    theirs = f"{pipe.collection}/run11/{MARKER}"
    with irods.session() as s:
        s.collections.create(f"{pipe.collection}/run11")
        with s.data_objects.open(theirs, "w") as f:
            f.write(b"someone else's marker")
    with pipe:
        write(root, "run11/a.bin", b"a")
        write(root, f"run11/{MARKER}", b"ours")
        until(pipe, lambda: zone_status(pipe)["failed"] == 1, what="the marker failed")
        work_for(pipe, 6)
        s = zone_status(pipe)
        tries = [r for r in caplog.records if "failed to ingest" in r.getMessage() and MARKER in r.getMessage()]
        assert len(tries) == 1, [r.getMessage() for r in tries]
        assert [f["path"] for f in s["failed_files"]] == [f"run11/{MARKER}"] and "conflict" in \
            s["failed_files"][0]["reason"], s
        assert any(d["state"] == "held" and MARKER in d["reason"] for d in s["directories"]), s["directories"]
        assert not done.exists()
        if not then_retry:
            return
        with irods.session() as sess:
            sess.data_objects.unlink(theirs, force=True)
        pipe.ledger.retry_failed(["z"])
        until(pipe, lambda: (done / "run11").is_dir(), what="the run moved")
    assert checksums(pipe) == {"run11/a.bin": sha2(b"a"), f"run11/{MARKER}": sha2(b"ours")}


@pytest.mark.slow
def test_a_marker_removed_after_its_run_was_released_still_lets_the_run_complete_once(
        marker_pipe: Any, tmp_path: Path) -> None:
    done = tmp_path / "done"
    pipe = marker_pipe(after="move", move_to=str(done), after_hold="0s")
    root = pipe.root
    with pipe:
        write(root, "run8/a.bin", b"a" * 10)
        write(root, f"run8/{MARKER}", b"")
        until(pipe, lambda: "run8" in units.pending(pipe.r, "ingestd", "z"), what="the run complete")
        (root / "run8" / MARKER).unlink()
        until(pipe, lambda: (done / "run8").is_dir(), what="the run moved")
    assert names(pipe) == {"run8/a.bin"}  # no marker object: it was gone before the run's end
    assert zone_status(pipe)["failed"] == 0


@pytest.mark.slow
def test_a_marker_rewritten_after_its_run_was_released_is_ingested_once_at_its_last_version(
        marker_pipe: Any) -> None:
    pipe = marker_pipe()
    root = pipe.root
    with pipe:
        write(root, "run9/a.bin", b"a" * 10)
        write(root, f"run9/{MARKER}", b"v1")
        until(pipe, lambda: "run9" in units.pending(pipe.r, "ingestd", "z"), what="the run complete")
        write(root, f"run9/{MARKER}", b"version 2")
        until(pipe, lambda: units.pending(pipe.r, "ingestd", "z") == {}, what="the run done")
        work_for(pipe, 2)
    assert checksums(pipe) == {"run9/a.bin": sha2(b"a" * 10), f"run9/{MARKER}": sha2(b"version 2")}


# --- the webhook of a held and of a complete set ----------------------------------------------------------------
@pytest.mark.slow
def test_a_held_set_sends_failed_not_completed_and_a_deleted_one_completed_once(
        manifest_pipe: Any) -> None:
    from irods_ingestd import notify
    from tests.webhook_receiver import Receiver

    with Receiver() as rx:
        pipe = manifest_pipe(after="delete", after_hold="0s", webhook=rx.url())
        root = pipe.root
        with pipe:
            write(root, "bad/a.dat", b"a")
            write(root, "bad/MANIFEST.sha256", f"{sha(b'not a')}  a.dat\n")
            write(root, "good/b.dat", b"b" * 7)
            write(root, "good/MANIFEST.sha256", f"{sha(b'b' * 7)}  b.dat\n")
            until(pipe, lambda: not (root / "good" / "b.dat").exists(), what="the good set deleted")
            until(pipe, lambda: any(d["state"] == "held" for d in zone_status(pipe)["directories"]), what="held")
            assert notify.flush(10)
        docs = list(rx.docs)
    completed = [d for d in docs if d["event"] == "completed"]
    assert [(d["unit"], d["kind"], d["file"], d["files"], d["bytes"], d["moved_to"]) for d in completed] == \
        [("good", "manifest", "good/MANIFEST.sha256", 2, 7 + len(f"{sha(b'b' * 7)}  b.dat\n"), "")], docs
    failed = [d for d in docs if d["event"] == "failed"]
    assert [(d["path"], d["kind"]) for d in failed] == [(str(root / "bad" / "a.dat"), "manifest")], docs
    assert (root / "bad" / "a.dat").exists() and (root / "bad" / "MANIFEST.sha256").exists()


@pytest.mark.slow
def test_a_manifest_cut_in_a_line_by_its_writer_fails_then_its_whole_version_completes_the_set(
        manifest_pipe: Any, tmp_path: Path) -> None:
    """The writer pauses in the middle of a line longer than settle: that version is bad (listed as failed);
    the whole version, once written, completes the set and the failure goes."""
    done = tmp_path / "done"
    pipe = manifest_pipe(after="move", move_to=str(done), after_hold="0s")
    root = pipe.root
    line = f"{sha(b'a' * 100)}  a.dat\n"
    with pipe:
        write(root, "d7/a.dat", b"a" * 100)
        with open(root / "d7" / "MANIFEST.sha256", "w") as f:
            f.write(line[:20])
            f.flush()
            until(pipe, lambda: zone_status(pipe)["failed"] == 1, what="the cut manifest failed")
            f.write(line[20:])
        until(pipe, lambda: (done / "d7").is_dir(), what="the set moved")
        work_for(pipe, 1)
        s = zone_status(pipe)
    assert s["failed"] == 0 and s["failed_files"] == [], s
    assert names(pipe) == {"d7/a.dat", "d7/MANIFEST.sha256"}


# --- complete_when = "close" -----------------------------------------------------------------------------------
@pytest.mark.slow
def test_close_a_writer_that_closes_and_reopens_to_append_gives_one_whole_object(
        tmp_path: Path, redis_server: Any, redis_conn: Any, irods: Any) -> None:
    with pipelines(tmp_path, redis_server.url, irods, readable=False, complete_when="close", close_settle="0.5s",
                   settle="20s") as make:
        pipe = make()
        root = pipe.root
        with pipe:
            time.sleep(0.3)
            want = b""
            for i in range(6):  # closed and opened again for appending, each time sooner than close_settle
                with open(root / "app.log", "ab") as f:
                    f.write(b"chunk %d\n" % i)
                want += b"chunk %d\n" % i
                time.sleep(0.15)
                pipe.work()
            until(pipe, lambda: "app.log" in names(pipe), timeout=15, what="the log in")
            work_for(pipe, 1.5)
        assert checksums(pipe) == {"app.log": sha2(want)}


# --- a marker or manifest the zone's own patterns skip ---------------------------------------------------------
@pytest.mark.parametrize("zone,field,said", [
    ({"complete_when": "marker", "marker": "RTAComplete.txt", "exclude": ["*.txt"]}, "marker", "exclude '*.txt'"),
    ({"complete_when": "marker", "marker": "upload.tmp"}, "marker", "temp_patterns '*.tmp'"),
    ({"complete_when": "manifest", "manifest": "MANIFEST.sha256", "include": ["*.fastq.gz"]}, "manifest",
     "include ['*.fastq.gz']"),
])
def test_a_marker_or_manifest_the_zone_skips_is_refused_by_the_config(tmp_path: Path, zone: dict[str, Any],
                                                                       field: str, said: str) -> None:
    """Such a name never reaches the daemon's gate: every directory of the zone would wait for ever, silently."""
    from irods_ingestd.config import ConfigError
    from tests.pipeline_harness import _toml

    (tmp_path / "landing").mkdir()
    (tmp_path / "env.json").write_text("{}")
    body = "\n".join(f"{k} = {_toml(v)}" for k, v in zone.items())
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[redis]\nurl = "redis://127.0.0.1:1/0"\n[irods]\nenvironment_file = "{tmp_path}/env.json"\n'
                   f'[[zone]]\nname = "z"\npath = "{tmp_path}/landing"\ncollection = "/tempZone/home/rods/x"\n'
                   f"{body}\n")
    from irods_ingestd.config import load

    with pytest.raises(ConfigError) as e:
        load(cfg)
    assert f"zone 'z'.{field}:" in str(e.value) and said in str(e.value) and "never" in str(e.value), e.value


@pytest.mark.slow
def test_a_run_made_again_under_a_done_runs_name_waits_for_its_marker_across_a_restart(marker_pipe: Any) -> None:
    """Keep zone: run13 done; an operator renames it away; the daemon restarts; a new run13 arrives (a
    re-delivery): its files wait for its own marker (the first daemon knew the old directory, the second only its
    name). (A directory removed and made again can get the same inode back, ext4 reuses them: that one is taken
    for the done run.)"""
    pipe = marker_pipe()
    root = pipe.root
    with pipe:
        write(root, "run13/a.bin", b"first")
        write(root, f"run13/{MARKER}", b"")
        until(pipe, lambda: units.pending(pipe.r, "ingestd", "z") == {} and f"run13/{MARKER}" in names(pipe),
              what="the run done")
    os.rename(root / "run13", root / "run13.old")
    with pipe:
        write(root, "run13/b.bin", b"second delivery")
        work_for(pipe, 3)
        assert "run13/b.bin" not in names(pipe), "a file of a new run directory went in before its marker"
        write(root, f"run13/{MARKER}", b"again")
        until(pipe, lambda: "run13/b.bin" in names(pipe), what="the second run in")
    assert "run13/a.bin" in names(pipe) and zone_status(pipe)["failed"] == 0


@pytest.mark.slow
def test_a_run_held_by_a_file_open_for_writing_says_which_in_status(marker_pipe: Any, tmp_path: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="irods_ingestd")
    done = tmp_path / "done"
    pipe = marker_pipe(after="move", move_to=str(done), after_hold="0s")
    root = pipe.root
    with pipe:
        write(root, "run14/a.bin", b"")
        with open(root / "run14" / "a.bin", "ab") as f:  # quiet, but still open for writing
            f.write(b"a")
            f.flush()
            write(root, f"run14/{MARKER}", b"")
            until(pipe, lambda: f"run14/{MARKER}" in names(pipe), what="the run in")
            until(pipe, lambda: any("open for writing" in d["reason"] for d in zone_status(pipe)["directories"]),
                  what="status says why")
            work_for(pipe, 4)
            assert not done.exists()
            said = journal(caplog, "run14/a.bin is still open for writing")
            assert len(said) == 1 and said[0].__dict__["fields"]["INGEST_ZONE"] == "z", [r.getMessage() for r in said]
        until(pipe, lambda: (done / "run14").is_dir(), what="the run moved once closed")


@pytest.mark.slow
def test_a_manifest_rewritten_while_the_daemon_was_down_still_has_every_file_checked_before_the_move(
        manifest_pipe: Any, tmp_path: Path) -> None:
    """The set was released and ingested under a first manifest (b.dat not listed); the daemon stops; the
    manifest is written again listing b.dat with a sum its bytes do not have; a new daemon starts. The set must
    not be moved: b.dat fails against the sum (status), the set is held."""
    done = tmp_path / "done"
    pipe = manifest_pipe(after="move", move_to=str(done), after_hold="4s")
    root = pipe.root
    with pipe:
        write(root, "d11/a.dat", b"a")
        write(root, "d11/b.dat", b"b")
        write(root, "d11/MANIFEST.sha256", f"{sha(b'a')}  a.dat\n")
        until(pipe, lambda: {"d11/a.dat", "d11/b.dat", "d11/MANIFEST.sha256"} <= names(pipe), what="the set in")
    write(root, "d11/MANIFEST.sha256", f"{sha(b'a')}  a.dat\n{sha(b'not b')}  b.dat\n")
    with pipe:
        until(pipe, lambda: zone_status(pipe)["failed"] == 1, what="b.dat failed against the new sum")
        work_for(pipe, 5)
        s = zone_status(pipe)
    assert not (done / "d11").exists() and (root / "d11" / "b.dat").exists()
    (failed,) = s["failed_files"]
    assert failed["path"] == "d11/b.dat" and "sha256" in failed["reason"] and failed["kind"] == "manifest", failed
    assert any(d["state"] == "held" for d in s["directories"]), s["directories"]
