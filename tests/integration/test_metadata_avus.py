"""Declarative metadata (issue 14.2) through the whole pipeline on the real server: daemon thread, real RQ
workers in bursts, real Redis, the real iRODS. AVUs from the path (path_regex), from a file's JSON sidecar
and from a directory's sidecar (on its collection), queried back with GenQuery; bad sidecars fail their file
and leave nothing in iRODS."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from irods.column import Like
from irods.meta import iRODSMeta
from irods.models import Collection, CollectionMeta, DataObject, DataObjectMeta

from irods_ingestd.actions import status
from irods_ingestd.ingest import usermeta
from tests.pipeline_harness import Pipeline, pipelines, until, write

REGEX = r"^(?P<run>[^/]+)/(?P<lane>L\d+)/(?P<sample>[^/]+)\.fastq\.gz$"
SIDECARS = {"path_regex": REGEX, "avu_prefix": "seq::", "sidecar": "{name}.metadata.json",
            "dir_sidecar": "metadata.json"}


@pytest.fixture
def make_pipe(tmp_path: Path, redis_server: Any, redis_conn: Any, irods: Any) -> Iterator[Callable[..., Pipeline]]:
    with pipelines(tmp_path, redis_server.url, irods) as make:
        yield make


def obj_avus(pipe: Pipeline, rel: str) -> set[tuple[str, str, str]]:
    with pipe.irods.session() as s:
        return {(m.name, m.value, m.units or "") for m in s.metadata.get(DataObject, f"{pipe.collection}/{rel}")}


def coll_avus(pipe: Pipeline, rel: str) -> list[tuple[str, str, str]]:
    """A collection's AVUs as GenQuery lists them (a duplicate would show twice)."""
    with pipe.irods.session() as s:
        q = s.query(CollectionMeta.name, CollectionMeta.value, CollectionMeta.units) \
            .filter(Collection.name == f"{pipe.collection}/{rel}".rstrip("/"))
        return sorted((r[CollectionMeta.name], r[CollectionMeta.value], r[CollectionMeta.units] or "") for r in q)


def failures(pipe: Pipeline) -> dict[str, dict[str, Any]]:
    return {f["path"]: f for f in status.gather(pipe.cfg)["zones"][pipe.name]["failed_files"]}


def everything(pipe: Pipeline) -> set[str]:
    """Every data object below the zone's collection, temporary ones included, relative to it."""
    with pipe.irods.session() as s:
        out = set()
        for cond in (Collection.name == pipe.collection, Like(Collection.name, pipe.collection + "/%")):
            for row in s.query(Collection.name, DataObject.name).filter(cond):
                out.add(f"{row[Collection.name]}/{row[DataObject.name]}"[len(pipe.collection) + 1:])
        return out


def test_path_and_sidecar_avus_are_queryable_and_sidecars_are_not_objects(
        make_pipe: Callable[..., Pipeline], monkeypatch: pytest.MonkeyPatch) -> None:
    changes: list[tuple[str, int]] = []
    real_sync = usermeta.sync_collection

    def sync(session: Any, coll: str, triples: Any) -> int:
        n = real_sync(session, coll, triples)
        changes.append((coll, n))
        return n

    monkeypatch.setattr(usermeta, "sync_collection", sync)
    pipe = make_pipe(**SIDECARS)
    lane = "RUN_0042/L001"
    write(pipe, f"{lane}/metadata.json", {"flowcell": "HXYZ123", "operator": ["ann", "bob"],
                                          "yield": {"value": 12.5, "units": "Gb"}})
    write(pipe, f"{lane}/S1.fastq.gz.metadata.json",
          {"organism": ["human", "mouse"], "coverage": {"value": 30, "units": "x"}, "paired": True,
           "reads": 1200000})
    for i in range(1, 5):
        write(pipe, f"{lane}/S{i}.fastq.gz", f"@read{i}\nACGT\n+\nIIII\n")
    write(pipe, "RUN_0042/notes.txt", "no lane, no sample: the regex does not match")
    with pipe:
        pipe.drain(min_done=5)
    assert failures(pipe) == {}
    # the sidecars were not ingested as objects, nor anything temporary left
    assert everything(pipe) == {f"{lane}/S{i}.fastq.gz" for i in range(1, 5)} | {"RUN_0042/notes.txt"}

    # path AVUs, found by GenQuery
    with pipe.irods.session() as s:
        q = s.query(Collection.name, DataObject.name).filter(DataObjectMeta.name == "seq::sample") \
            .filter(DataObjectMeta.value == "S3").filter(Like(Collection.name, pipe.collection + "%"))
        assert [f"{r[Collection.name]}/{r[DataObject.name]}" for r in q] == [f"{pipe.collection}/{lane}/S3.fastq.gz"]
        q = s.query(DataObject.name).filter(DataObjectMeta.name == "seq::lane").filter(DataObjectMeta.value == "L001") \
            .filter(Like(Collection.name, pipe.collection + "%"))
        assert sorted(r[DataObject.name] for r in q) == [f"S{i}.fastq.gz" for i in range(1, 5)]
        q = s.query(DataObject.name).filter(DataObjectMeta.name == "organism") \
            .filter(DataObjectMeta.value == "mouse").filter(Like(Collection.name, pipe.collection + "%"))
        assert [r[DataObject.name] for r in q] == ["S1.fastq.gz"]
    s1 = obj_avus(pipe, f"{lane}/S1.fastq.gz")
    assert {("seq::run", "RUN_0042", ""), ("seq::lane", "L001", ""), ("seq::sample", "S1", ""),
            ("organism", "human", ""), ("organism", "mouse", ""), ("coverage", "30", "x"), ("paired", "true", ""),
            ("reads", "1200000", "")} <= s1, s1
    assert ("ingestd::zone", "z", "") in s1  # the provenance as before
    s2 = obj_avus(pipe, f"{lane}/S2.fastq.gz")
    assert {("seq::run", "RUN_0042", ""), ("seq::sample", "S2", "")} <= s2
    assert not any(a in ("organism", "coverage", "flowcell") for a, _, _ in s2)  # no sidecar, no sidecar AVUs
    notes = obj_avus(pipe, "RUN_0042/notes.txt")
    assert not any(a.startswith("seq::") for a, _, _ in notes) and ("ingestd::zone", "z", "") in notes

    # the directory's sidecar on its collection, each AVU once, written once for the four files
    assert coll_avus(pipe, lane) == [("flowcell", "HXYZ123", ""), ("operator", "ann", ""), ("operator", "bob", ""),
                                     ("yield", "12.5", "Gb")]
    assert not any(a in ("flowcell", "operator") for a, _, _ in s1)  # not on the objects
    lane_coll = f"{pipe.collection}/{lane}"
    assert [n for c, n in changes if c == lane_coll and n] == [4], changes
    assert all(c == lane_coll for c, _ in changes)  # RUN_0042 has no directory sidecar: no call for it


def test_a_changed_directory_sidecar_replaces_its_attributes_on_the_next_file(
        make_pipe: Callable[..., Pipeline]) -> None:
    pipe = make_pipe(dir_sidecar="metadata.json")
    write(pipe, "run/metadata.json", {"status": "sequencing", "operator": ["ann", "bob"]})
    write(pipe, "run/a.dat", "a")
    with pipe:
        pipe.drain(min_done=1)
        with pipe.irods.session() as s:  # someone's own AVU on the collection stays
            s.metadata.add(Collection, f"{pipe.collection}/run", iRODSMeta("note", "x"))
        write(pipe, "run/metadata.json", {"status": "complete", "operator": "bob"})
        write(pipe, "run/b.dat", "b")
        pipe.drain(min_done=2)
    assert failures(pipe) == {}
    assert coll_avus(pipe, "run") == [("note", "x", ""), ("operator", "bob", ""), ("status", "complete", "")]


@pytest.mark.parametrize(("sidecar", "says"), [
    (b'{"organism": "human"', "not valid JSON"),
    (b'{"organism": null}', "'organism': null is not a value"),
    (b'{"comment": "' + b"x" * 3000 + b'"}', "value of 'comment' is 3000 bytes long (iRODS keeps at most 2700)"),
    (b'{"ingestd::zone": "elsewhere"}', "'ingestd::zone' is irods-ingestd's own"),
    (b'{"empty": ""}', "empty value of 'empty'"),
])
def test_a_bad_sidecar_fails_its_file_and_nothing_of_it_reaches_irods(
        make_pipe: Callable[..., Pipeline], caplog: pytest.LogCaptureFixture, sidecar: bytes, says: str) -> None:
    pipe = make_pipe(**SIDECARS)
    write(pipe, "R1/L002/bad.fastq.gz.metadata.json", sidecar)
    write(pipe, "R1/L002/bad.fastq.gz", "@r\nA\n+\nI\n")
    write(pipe, "R1/L002/good.fastq.gz", "@r\nC\n+\nI\n")
    with caplog.at_level(logging.ERROR), pipe:
        until(pipe, lambda: pipe.ledger.stats("z")["failed"] == 1 and pipe.ledger.stats("z")["done"] == 1,
              what="one failed, one done")
    f = failures(pipe)
    assert list(f) == ["R1/L002/bad.fastq.gz"], f
    side = f"{pipe.root}/R1/L002/bad.fastq.gz.metadata.json"
    assert f["R1/L002/bad.fastq.gz"]["reason"].startswith(f"sidecar {side}: "), f
    assert says in f["R1/L002/bad.fastq.gz"]["reason"]
    assert f["R1/L002/bad.fastq.gz"]["kind"] == "metadata"
    assert says in caplog.text and "bad.fastq.gz" in caplog.text  # the journal's failed line says it too
    assert everything(pipe) == {"R1/L002/good.fastq.gz"}  # neither the object nor a temporary copy


def test_a_bad_directory_sidecar_fails_the_files_of_its_directory(make_pipe: Callable[..., Pipeline]) -> None:
    pipe = make_pipe(dir_sidecar="metadata.json")
    write(pipe, "bad/metadata.json", '{"a": [[1]]}')
    write(pipe, "bad/x.dat", "x")
    write(pipe, "good/metadata.json", '{"a": 1}')
    write(pipe, "good/y.dat", "y")
    with pipe:
        until(pipe, lambda: pipe.ledger.stats("z")["failed"] == 1 and pipe.ledger.stats("z")["done"] == 1,
              what="one failed, one done")
    f = failures(pipe)
    assert list(f) == ["bad/x.dat"]
    assert f["bad/x.dat"]["reason"] == \
        f"sidecar {pipe.root}/bad/metadata.json: 'a': a list inside a list is not a value"
    assert everything(pipe) == {"good/y.dat"}
    assert coll_avus(pipe, "good") == [("a", "1", "")]
    assert coll_avus(pipe, "bad") == []


def test_path_regex_required_fails_what_does_not_match(make_pipe: Callable[..., Pipeline]) -> None:
    pipe = make_pipe(path_regex=REGEX, path_regex_required=True)
    write(pipe, "R7/L003/s.fastq.gz", "@r\nG\n+\nI\n")
    write(pipe, "R7/stray.txt", "misplaced")
    with pipe:
        until(pipe, lambda: pipe.ledger.stats("z")["failed"] == 1 and pipe.ledger.stats("z")["done"] == 1,
              what="one failed, one done")
    f = failures(pipe)
    assert list(f) == ["R7/stray.txt"]
    assert "does not match the zone's path_regex" in f["R7/stray.txt"]["reason"]
    assert everything(pipe) == {"R7/L003/s.fastq.gz"}
    assert {("ingestd::run", "R7", ""), ("ingestd::lane", "L003", ""), ("ingestd::sample", "s", "")} <= \
        obj_avus(pipe, "R7/L003/s.fastq.gz")  # the default prefix


def test_sidecar_ingest_true_ingests_sidecars_as_objects_too(make_pipe: Callable[..., Pipeline]) -> None:
    pipe = make_pipe(sidecar="{name}.json", dir_sidecar="dir.json", sidecar_ingest=True)
    write(pipe, "d/a.csv", "1,2\n")
    write(pipe, "d/a.csv.json", {"rows": 1})
    write(pipe, "d/dir.json", {"project": "p1"})
    with pipe:
        pipe.drain(min_done=3)
    assert everything(pipe) == {"d/a.csv", "d/a.csv.json", "d/dir.json"}
    assert ("rows", "1", "") in obj_avus(pipe, "d/a.csv")
    assert ("project", "p1", "") in coll_avus(pipe, "d")


def test_check_config_names_zone_and_field_of_each_problem(tmp_path: Path) -> None:
    (tmp_path / "landing").mkdir()
    (tmp_path / "env.json").write_text("{}")
    conf = tmp_path / "config.toml"
    conf.write_text(f'''[redis]
url = "redis://127.0.0.1:1/0"
[irods]
environment_file = "{tmp_path}/env.json"
[[zone]]
name = "seq"
path = "{tmp_path}/landing"
collection = "/tempZone/home/rods/seq"
path_regex = '^(?P<run>[^/]+/(?P<lane>L\\d+)'
sidecar = "metadata.json"
dir_sidecar = "meta/data.json"
[[zone]]
name = "two"
path = "{tmp_path}/landing/../landing2"
collection = "/tempZone/home/rods/two"
path_regex = '^([^/]+)/'
''')
    (tmp_path / "landing2").mkdir()
    r = subprocess.run([sys.executable, "-m", "irods_ingestd", "check-config", "--offline", "-c", str(conf)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r
    for says in ("zone 'seq'.path_regex: does not compile", "zone 'seq'.sidecar: 'metadata.json' must hold {name}",
                 "zone 'seq'.dir_sidecar: 'meta/data.json' must be a file name",
                 "zone 'two'.path_regex: has no named group"):
        assert says in r.stderr, r.stderr


def test_a_sidecar_still_being_written_is_waited_for(make_pipe: Callable[..., Pipeline]) -> None:
    pipe = make_pipe(sidecar="{name}.metadata.json")
    side = write(pipe, "r/s.dat.metadata.json", '{"organism": "hu')  # the writer is not done
    write(pipe, "r/s.dat", "data")
    with pipe:
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:  # the file settles and is tried meanwhile
            pipe.work()
            time.sleep(0.1)
        assert failures(pipe) == {}
        side.write_text('{"organism": "human"}')
        until(pipe, lambda: pipe.ledger.stats("z")["done"] == 1, what="the file, once its sidecar is whole")
    assert ("organism", "human", "") in obj_avus(pipe, "r/s.dat")
    assert failures(pipe) == {}
