"""Issue 15.2 through the pipeline on the real iRODS (daemon, RQ worker, Redis) with a local HTTP receiver:
one JSON document per failed file (and none for the files ingested), zone_lost when the zone's directory is
removed, and a receiver that fails or hangs never slows the ingest (retries, then giving up with a log)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytest

from irods_ingestd import names, notify
from tests.pipeline_harness import Pipeline
from tests.webhook_receiver import Receiver


def pipeline(request: pytest.FixtureRequest, tmp: Path, redis_url: str, irods: Any, **zone: Any) -> Pipeline:
    p = Pipeline(tmp, redis_url, irods, zone=zone)
    p.cleanup()
    request.addfinalizer(p.cleanup)
    return p


def conflicts(p: Pipeline, rels: list[str]) -> None:
    """Objects someone else made where these landing files go: each such file fails (a conflict)."""
    with p.irods.session() as s:
        s.collections.create(p.collection, recurse=True)
        for rel in rels:
            obj = s.data_objects.create(names.target_for(p.collection, rel).path)
            with obj.open("w") as f:
                f.write(b"someone else's")


def write(p: Pipeline, rels: list[str]) -> None:
    assert p.root is not None
    for rel in rels:
        (p.root / rel).write_bytes(b"landing " + rel.encode())


def test_one_document_per_failed_file_and_none_for_the_ingested(request, tmp_path, redis_server, redis_conn,
                                                                 irods):
    with Receiver() as rx:
        p = pipeline(request, tmp_path, redis_server.url, irods, webhook=rx.url())
        bad, good = ["bad1.dat", "bad2.dat", "bad3.dat"], ["good1.dat", "good2.dat"]
        conflicts(p, bad)
        write(p, bad + good)
        with p:
            p.drain(min_done=2)
        assert p.ledger.stats("z")["failed"] == 3
        docs = rx.wait_docs(3)
        time.sleep(1.0)  # nothing more comes
        docs = list(rx.docs)
    assert len(docs) == 3, docs
    assert sorted(d["path"] for d in docs) == sorted(f"{p.root}/{r}" for r in bad)
    for d in docs:
        assert d["event"] == "failed" and d["zone"] == "z" and d["kind"] == "conflict"
        assert d["object"] == names.target_for(p.collection, Path(d["path"]).name).path
        assert d["reason"].startswith("conflict:") and d["size"] == len(b"landing bad1.dat")
        assert d["host"] and d["time"] and d["mtime_ns"] > 0


def test_a_zone_whose_directory_is_removed_sends_zone_lost(request, tmp_path, redis_server, redis_conn, irods):
    with Receiver() as rx:
        p = pipeline(request, tmp_path, redis_server.url, irods, webhook=rx.url(), webhook_events=["zone_lost"])
        with p:
            write(p, ["a.dat"])
            p.drain(min_done=1)
            assert p.root is not None
            (p.root / "a.dat").unlink()
            p.root.rmdir()
            docs = rx.wait_docs(1, timeout=15)
            p.root.mkdir()
    assert len(docs) == 1, docs
    d = docs[0]
    assert d["event"] == "zone_lost" and d["zone"] == "z" and d["path"] == str(p.root)
    assert d["object"] == p.collection and "removed" in d["reason"]


def test_a_receiver_answering_500_is_retried_then_given_up_without_slowing_ingest(
        request, tmp_path, redis_server, redis_conn, irods, monkeypatch, caplog):
    monkeypatch.setattr(notify, "BACKOFF_FIRST", 0.1)
    caplog.set_level(logging.WARNING, logger="irods_ingestd.notify")
    with Receiver(status=500) as rx:
        p = pipeline(request, tmp_path, redis_server.url, irods, webhook=rx.url(), webhook_retries=2)
        bad = [f"bad{i}.dat" for i in range(3)]
        conflicts(p, bad)
        write(p, bad)
        with p:
            p.drain()
        assert notify.flush(30)
        assert rx.attempts == 3 * 3  # each document: the first attempt and two retries
    given_up = [r.getMessage() for r in caplog.records if "given up after 3 attempts: HTTP 500" in r.getMessage()]
    assert len(given_up) == 3, caplog.text
    assert "s3cr3t" not in caplog.text


def test_a_receiver_that_hangs_does_not_slow_ingest(request, tmp_path, redis_server, redis_conn, irods,
                                                     monkeypatch, caplog):
    """Each document would cost 3 s (timeout 1 s, one retry after 1 s); four failed files ingest as fast as
    without a webhook, and the documents time out in the background."""
    caplog.set_level(logging.WARNING, logger="irods_ingestd.notify")
    with Receiver(delay=30) as rx:
        p = pipeline(request, tmp_path, redis_server.url, irods, webhook=rx.url(), webhook_timeout="1s",
                     webhook_retries=1)
        bad = [f"bad{i}.dat" for i in range(4)]
        conflicts(p, bad)
        with p:
            t0 = time.monotonic()
            write(p, bad + ["good.dat"])
            p.drain(min_done=1)
            took = time.monotonic() - t0
            assert p.ledger.stats("z")["failed"] == 4
        assert took < 9.0, took  # 4 documents sent in line would have taken at least 12 s
        assert notify.flush(30)
        assert rx.attempts == 8
    assert len([r for r in caplog.records if "no answer within 1s" in r.getMessage()]) == 4, caplog.text
