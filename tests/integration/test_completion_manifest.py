"""Completion by manifest (issue 14.1) through the whole pipeline on the real iRODS: a delivery is ingested
when every listed file is present and settled; each file is checked against its listed sum; a wrong sum
fails that file with the reason in `status` and keeps the whole set in the landing zone; a missing file
holds the set."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import pytest

from irods_ingestd.actions import status
from irods_ingestd.completion import units
from tests.pipeline_harness import names, pipelines, until, write

FILES = {"a.fastq.gz": b"A" * 5000, "b.fastq.gz": b"B" * 7000, "qc/report.html": b"<html>ok</html>"}


def manifest_for(files: dict[str, bytes], wrong: str = "", algo: str = "sha256") -> bytes:
    lines = []
    for rel, data in files.items():
        h = hashlib.new(algo, data + (b"!" if rel == wrong else b"")).hexdigest()
        lines.append(f"{h}  {rel}" if rel != "qc/report.html" else f"{h} *./{rel}")
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture
def make_pipe(tmp_path: Path, redis_server: Any, redis_conn: Any, irods: Any) -> Any:
    with pipelines(tmp_path, redis_server.url, irods, readable=False, complete_when="manifest",
                   manifest="*.sha256") as make:
        yield make


@pytest.mark.parametrize("algo", ["sha256", "md5"])
def test_a_complete_delivery_is_verified_and_moved(make_pipe: Any, tmp_path: Path, algo: str) -> None:
    done = tmp_path / "done"
    pipe = make_pipe(after="move", move_to=str(done), after_hold="0s")
    root = pipe.root
    assert root is not None
    with pipe:
        for rel, data in FILES.items():
            write(root, f"d1/{rel}", data)
        write(root, "d1/MANIFEST.sha256", manifest_for(FILES, algo=algo))
        until(pipe, lambda: (done / "d1").is_dir(), what="the delivery moved")
    assert names(pipe) == {f"d1/{rel}" for rel in FILES} | {"d1/MANIFEST.sha256"}
    assert status.gather(pipe.cfg)["zones"]["z"]["failed"] == 0


@pytest.mark.parametrize("after", ["move", "delete"])
def test_one_wrong_sum_fails_that_file_and_keeps_the_whole_set(make_pipe: Any, tmp_path: Path, after: str) -> None:
    done = tmp_path / "done"
    pipe = make_pipe(after=after, after_hold="0s", **({"move_to": str(done)} if after == "move" else {}))
    root = pipe.root
    assert root is not None
    with pipe:
        for rel, data in FILES.items():
            write(root, f"d2/{rel}", data)
        write(root, "d2/MANIFEST.sha256", manifest_for(FILES, wrong="b.fastq.gz"))
        until(pipe, lambda: status.gather(pipe.cfg)["zones"]["z"]["failed"] == 1, what="b failed")
        until(pipe, lambda: any(d["state"] == "held" for d in status.gather(pipe.cfg)["zones"]["z"]["directories"]),
              what="the set held")
        s = status.gather(pipe.cfg)["zones"]["z"]
        time.sleep(1.0)
        pipe.work()
    (failed,) = s["failed_files"]
    assert failed["path"] == "d2/b.fastq.gz" and "sha256 mismatch" in failed["reason"], failed
    assert failed["kind"] == "manifest"
    (held,) = s["directories"]
    assert held["path"] == "d2/" and "1 failed (d2/b.fastq.gz)" in held["reason"], held
    assert "d2/b.fastq.gz" in status.render(status.gather(pipe.cfg))
    # the good files are in iRODS; the bad one is not (and no temporary copy of it is left)
    assert names(pipe) == {"d2/a.fastq.gz", "d2/qc/report.html", "d2/MANIFEST.sha256"}
    # nothing of the set was passed on: every landing file is where it was
    assert not done.exists()
    assert all((root / "d2" / rel).read_bytes() == data for rel, data in FILES.items())


def test_a_missing_listed_file_holds_the_set(make_pipe: Any) -> None:
    pipe = make_pipe()
    root = pipe.root
    assert root is not None
    with pipe:
        for rel, data in FILES.items():
            if rel != "qc/report.html":
                write(root, f"d3/{rel}", data)
        write(root, "d3/MANIFEST.sha256", manifest_for(FILES))
        end = time.monotonic() + 8
        while time.monotonic() < end:
            pipe.work()
            time.sleep(0.3)
        assert names(pipe) == set(), "a set missing a listed file was ingested"
        dirs = status.gather(pipe.cfg)["zones"]["z"]["directories"]
        assert dirs and dirs[0]["state"] == "incomplete" and "d3/qc/report.html" in dirs[0]["reason"], dirs
        write(root, "d3/qc/report.html", FILES["qc/report.html"])
        until(pipe, lambda: names(pipe) == {f"d3/{rel}" for rel in FILES} | {"d3/MANIFEST.sha256"},
              what="the set ingested once complete")
        until(pipe, lambda: units.pending(pipe.r, "ingestd", "z") == {}, what="the set done")
    assert status.gather(pipe.cfg)["zones"]["z"]["directories"] == []


def test_a_bad_manifest_is_listed_as_failed(make_pipe: Any) -> None:
    pipe = make_pipe()
    root = pipe.root
    assert root is not None
    with pipe:
        write(root, "d4/a.fastq.gz", b"a")
        write(root, "d4/MANIFEST.sha256", b"this is not a manifest\n")
        until(pipe, lambda: status.gather(pipe.cfg)["zones"]["z"]["failed"] == 1, what="the manifest failed")
        pipe.work()
    (failed,) = status.gather(pipe.cfg)["zones"]["z"]["failed_files"]
    assert failed["path"] == "d4/MANIFEST.sha256" and "bad manifest: line 1" in failed["reason"]
    assert names(pipe) == set()


def test_a_daemon_restart_mid_delivery_loses_nothing(make_pipe: Any) -> None:
    pipe = make_pipe()
    root = pipe.root
    assert root is not None
    with pipe:  # the first daemon: the delivery waits for one listed file
        for rel, data in FILES.items():
            if rel != "qc/report.html":
                write(root, f"d5/{rel}", data)
        write(root, "d5/MANIFEST.sha256", manifest_for(FILES, wrong="b.fastq.gz"))
        time.sleep(1.5)
        pipe.work()
        assert names(pipe) == set()
    with pipe:  # the second finds it all again from disk; the last file completes it; the sums still apply
        write(root, "d5/qc/report.html", FILES["qc/report.html"])
        until(pipe, lambda: status.gather(pipe.cfg)["zones"]["z"]["failed"] == 1, what="b failed")
        until(pipe, lambda: names(pipe) == {"d5/a.fastq.gz", "d5/qc/report.html", "d5/MANIFEST.sha256"},
              what="the good files ingested")
    (failed,) = status.gather(pipe.cfg)["zones"]["z"]["failed_files"]
    assert failed["path"] == "d5/b.fastq.gz" and "mismatch" in failed["reason"]


def test_a_corrected_manifest_lets_the_failed_file_in_and_the_set_move(make_pipe: Any, tmp_path: Path) -> None:
    """The sender fixes the wrong sum by rewriting the manifest: the new sums apply at once (no restart),
    the file that failed against the old sum goes in, and the whole set moves."""
    done = tmp_path / "done"
    pipe = make_pipe(after="move", move_to=str(done), after_hold="0s")
    root = pipe.root
    assert root is not None
    with pipe:
        for rel, data in FILES.items():
            write(root, f"d6/{rel}", data)
        write(root, "d6/MANIFEST.sha256", manifest_for(FILES, wrong="b.fastq.gz"))
        until(pipe, lambda: status.gather(pipe.cfg)["zones"]["z"]["failed"] == 1, what="b failed")
        write(root, "d6/MANIFEST.sha256", manifest_for(FILES))
        until(pipe, lambda: (done / "d6").is_dir(), what="the corrected delivery moved")
        assert status.gather(pipe.cfg)["zones"]["z"]["failed"] == 0
    # the first manifest was ingested too, and is kept as an earlier version (`versions = "keep"`)
    assert names(pipe) == {f"d6/{rel}" for rel in FILES} | {"d6/MANIFEST.sha256", "d6/MANIFEST.sha256.~1~"}
    assert (done / "d6" / "MANIFEST.sha256").read_bytes() == manifest_for(FILES)
