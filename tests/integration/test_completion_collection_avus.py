"""A completed directory says so on its collection (issue 14.2, "collection-level AVUs for a completed
directory"): once all of a marker or manifest directory is verified in iRODS, its collection gets
`ingestd::completed` (when, UTC), `ingestd::completed_by` (the rule and its file), `ingestd::completed_files`
and `ingestd::completed_bytes`, so a pipeline can find complete runs by GenQuery. A held set gets none."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import pytest
from irods.models import Collection, CollectionMeta

from tests.pipeline_harness import Pipeline, pipelines, until, write


@pytest.fixture
def make_pipe(tmp_path: Path, redis_server: Any, redis_conn: Any, irods: Any) -> Any:
    with pipelines(tmp_path, redis_server.url, irods, readable=False) as make:
        yield make


def coll_avus(pipe: Pipeline, rel: str) -> dict[str, str]:
    with pipe.irods.session() as s:
        q = s.query(CollectionMeta.name, CollectionMeta.value).filter(Collection.name == f"{pipe.collection}/{rel}")
        return {r[CollectionMeta.name]: r[CollectionMeta.value] for r in q
                if r[CollectionMeta.name].startswith("ingestd::")}


def test_a_run_completed_by_its_marker_is_tagged_on_its_collection(make_pipe: Any, tmp_path: Path) -> None:
    pipe = make_pipe(complete_when="marker", marker="RTAComplete.txt", after="move", move_to=str(tmp_path / "done"),
                     after_hold="0s")
    with pipe:
        write(pipe, "run1/a.bcl", b"a" * 100)
        write(pipe, "run1/L001/b.bcl", b"b" * 50)
        write(pipe, "run1/RTAComplete.txt", b"")
        until(pipe, lambda: (tmp_path / "done" / "run1").is_dir(), what="the run moved")
    avus = coll_avus(pipe, "run1")
    assert avus.get("ingestd::completed_by") == "marker RTAComplete.txt", avus
    assert avus.get("ingestd::completed_files") == "3" and avus.get("ingestd::completed_bytes") == "150", avus
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", avus.get("ingestd::completed", "")), avus
    assert coll_avus(pipe, "run1/L001") == {}  # the run's collection only


def test_a_manifest_set_is_tagged_once_complete_and_a_held_one_not(make_pipe: Any) -> None:
    pipe = make_pipe(complete_when="manifest", manifest="MANIFEST.sha256")
    good = {"x.dat": b"x" * 10, "y.dat": b"y" * 20}
    with pipe:
        for rel, d in good.items():
            write(pipe, f"ok/{rel}", d)
            write(pipe, f"bad/{rel}", d)
        write(pipe, "ok/MANIFEST.sha256", "".join(f"{hashlib.sha256(d).hexdigest()}  {r}\n" for r, d in good.items()))
        write(pipe, "bad/MANIFEST.sha256", "".join(f"{hashlib.sha256(b'other').hexdigest()}  {r}\n" for r in good))
        until(pipe, lambda: coll_avus(pipe, "ok").get("ingestd::completed_by") == "manifest ok/MANIFEST.sha256"
              or bool(coll_avus(pipe, "ok")), what="the good set tagged")
        until(pipe, lambda: pipe.ledger.stats("z")["failed"] == 2, what="the bad set's files failed")
    ok = coll_avus(pipe, "ok")
    assert ok.get("ingestd::completed_by") == "manifest MANIFEST.sha256", ok
    assert ok.get("ingestd::completed_files") == "3" and ok.get("ingestd::completed_bytes") == str(
        30 + len((pipe.root / "ok/MANIFEST.sha256").read_bytes())), ok
    assert coll_avus(pipe, "bad") == {}
