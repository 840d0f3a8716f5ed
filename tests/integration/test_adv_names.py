"""Session 4 probe, names and paths: landing names that are odd for a shell, for XML, for GenQuery, for
Unicode or for iRODS' limits, through the whole pipeline (daemon thread, real RQ workers in bursts, real
Redis, the real iRODS) in put and register zones. Each file either reaches iRODS at the path
`names.target_for` gives, with its checksum, or fails once with its name in the ledger and the log."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from irods.models import DataObject

from irods_ingestd import names
from irods_ingestd.messages import MessageId
from tests.expect import sha2
from tests.pipeline_harness import Pipeline, pipelines

MODES = ["put", "register"]


@contextmanager
def outside_pytest_tmp() -> Iterator[Path]:
    """A directory for the pipeline outside /tmp/pytest-of-<user>: every pytest session that starts takes
    other users' search permission off that directory (tmpdir.py: mode & ~0o077), so a register zone's files
    below it became unreadable to the iRODS service account whenever another session started meanwhile."""
    d = Path(tempfile.mkdtemp(prefix="adv-names-"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def make_pipe(redis_server: Any, redis_conn: Any, irods: Any) -> Any:
    with outside_pytest_tmp() as tmp, pipelines(tmp, redis_server.url, irods) as make:
        yield make


def write_raw(pipe: Pipeline, rel: bytes | str, data: bytes) -> str:
    """A landing file at `rel` (bytes as they are on disk), its directories made; returns the job's rel."""
    assert pipe.root is not None
    raw = rel if isinstance(rel, bytes) else os.fsencode(rel)
    path = os.path.join(os.fsencode(pipe.root), raw)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return os.fsdecode(raw)


def checksums(pipe: Pipeline) -> dict[str, str]:
    """iRODS path → checksum of every object under the zone's collection (GenQuery, collection by collection:
    `pipe.objects()` asks with LIKE, which misses subcollections of a collection whose name holds `\\`)."""
    out: dict[str, str] = {}
    with pipe.irods.session() as s:
        if not s.collections.exists(pipe.collection):
            return out
        for coll, _, objs in s.collections.get(pipe.collection).walk():
            for o in objs:
                out[f"{coll.path}/{o.name}"] = o.checksum
    return out


def failures(pipe: Pipeline) -> dict[str, str]:
    return {rel: info["reason"] for rel, info in pipe.ledger.failures("z")}


def log_lines(caplog: pytest.LogCaptureFixture, message_id: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if getattr(r, "message_id", None) == message_id]


def assert_ingested(pipe: Pipeline, files: dict[str, bytes]) -> None:
    """Each rel is in iRODS at its target with the checksum of its bytes; nothing else is there."""
    want = {names.target_for(pipe.collection, rel).path: sha2(data) for rel, data in files.items()}
    got = checksums(pipe)
    assert got == want, {"missing": set(want) - set(got), "extra": set(got) - set(want)}


def assert_original_names(pipe: Pipeline, rels: list[str]) -> None:
    with pipe.irods.session() as s:
        for rel in rels:
            t = names.target_for(pipe.collection, rel)
            avus = {m.name: m.value for m in s.metadata.get(DataObject, t.path)}
            if t.mapped:
                assert names.rel_from_original_name(avus["ingestd::original_name"]) == rel, rel


def register_unsafe(pipe: Pipeline, rel: str) -> bool:
    """Register mode refuses a physical path the protocol cannot carry (non-UTF-8, control characters)."""
    return names.needs_mapping(os.path.join(os.fsdecode(pipe.root), rel))


def run(pipe: Pipeline, files: dict[str, bytes], refused: set[str], caplog: pytest.LogCaptureFixture,
        why: str = "") -> None:
    """Drain the pipeline; `files` less `refused` are in iRODS with their checksums, each refused one failed
    once, named in the ledger (with `why` in its reason) and in exactly one FILE_FAILED log line."""
    pipe.drain(min_done=len(files) - len(refused))
    fails = failures(pipe)
    assert set(fails) == refused, fails
    assert_ingested(pipe, {r: d for r, d in files.items() if r not in refused})
    logged = log_lines(caplog, MessageId.FILE_FAILED)
    for rel in refused:
        assert why in fails[rel], fails[rel]
        assert len([m for m in logged if f"/{names.display(rel)} (" in m]) == 1, (rel, logged)


# Characters a shell, XML, GenQuery or a LIKE pattern treat specially; all valid UTF-8 and printable
# except tab and newline (mapped to %09 / %0A).
ODD = ["new\nline", "tab\there", "back\\slash", " lead", "trail ", "  ", "per%cent", "per%25cent", "star*",
       "what?", 'dq"uote', "sq'uote", "amp&er", "semi;colon", "lt<gt>", "[br]ack", "under_score", "brace{}",
       "dollar$HOME", "back`tick", "hash#", "til~de", "x\\'y", "\\", "'", "%", "_", "a%_b"]


@pytest.mark.parametrize("mode", MODES)
def test_odd_characters_in_file_and_directory_names(make_pipe: Any, mode: str,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    pipe = make_pipe(mode=mode)
    files: dict[str, bytes] = {}
    with pipe:
        for i, name in enumerate(ODD):
            for rel in (f"f{i}{name}", f"{name}/{name}", f"d{i}/{name}"):
                files[write_raw(pipe, rel, f"{mode} {rel!r}".encode())] = f"{mode} {rel!r}".encode()
        refused = {r for r in files if mode == "register" and register_unsafe(pipe, r)}
        run(pipe, files, refused, caplog, "register mode cannot register")
    assert_original_names(pipe, [r for r in files if r not in refused])


@pytest.mark.parametrize("mode", MODES)
def test_names_that_are_not_utf8(make_pipe: Any, mode: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    pipe = make_pipe(mode=mode)
    raws = [b"ff\xff", b"\xff", b"latin1-caf\xe9", b"surrogate-\xed\xa0\x80", b"overlong-\xc0\xaf",
            b"dir\xfe/inner\xff", b"c1-\xc2\x85-nel", b"cr-\r-lf", b"esc-\x1b[0m", b"del-\x7f"]
    files: dict[str, bytes] = {}
    with pipe:
        for raw in raws:
            data = b"bytes of " + raw
            files[write_raw(pipe, raw, data)] = data
        refused = {r for r in files if mode == "register" and register_unsafe(pipe, r)}
        assert mode == "put" or len(refused) == len(raws) - 1  # all but the C1 control (valid UTF-8, XML)
        run(pipe, files, refused, caplog, "register mode cannot register")
    assert_original_names(pipe, [r for r in files if r not in refused])


@pytest.mark.parametrize("mode", MODES)
def test_names_differing_only_by_normalization_or_case(make_pipe: Any, mode: str,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    pipe = make_pipe(mode=mode)
    nfc = unicodedata.normalize("NFC", "caf\u00e9.txt")
    nfd = unicodedata.normalize("NFD", nfc)
    assert nfc != nfd
    rels = [nfc, nfd, "A.txt", "a.txt", f"{nfc}-dir/x", f"{nfd}-dir/x", "Dir/x", "dir/x",
            "\ufb01le", "file", "\u212b", "\u00c5"]  # ligature vs letters; angstrom sign vs A-ring
    files = {rel: f"{mode}: {rel.encode()!r}".encode() for rel in rels}
    with pipe:
        for rel, data in files.items():
            write_raw(pipe, rel, data)
        run(pipe, files, set(), caplog)


@pytest.mark.parametrize("mode", MODES)
def test_unicode_that_xml_cannot_carry(make_pipe: Any, mode: str, caplog: pytest.LogCaptureFixture) -> None:
    """Valid UTF-8 that is not an XML 1.0 character (U+FFFE, U+FFFF: the server stored such a name, and
    from then on every GenQuery of its collection failed to parse), or is invisible/odd in XML."""
    caplog.set_level(logging.INFO)
    pipe = make_pipe(mode=mode)
    rels = ["nonchar-\ufffe", "nonchar-\uffff", "bom-\ufeff", "ls-\u2028", "nbsp-\u00a0", "rtl-\u202e",
            "emoji-\U0001f600", "zwj-\u200d", "astral-\U0010fffd", "nc-\ufdd0", "d\uffff/inner"]
    files = {rel: f"data {rel.encode()!r}".encode() for rel in rels}
    with pipe:
        for rel, data in files.items():
            write_raw(pipe, rel, data)
        refused = {r for r in files if mode == "register" and register_unsafe(pipe, r)}
        assert len(refused) == (3 if mode == "register" else 0)
        run(pipe, files, refused, caplog, "register mode cannot register")
    assert_original_names(pipe, [r for r in files if r not in refused])


@pytest.mark.parametrize("mode", MODES)
def test_dot_names(make_pipe: Any, mode: str, caplog: pytest.LogCaptureFixture) -> None:
    """Components of dots that are not `.` or `..`: ordinary names for POSIX, and for iRODS too."""
    pipe = make_pipe(mode=mode)
    rels = ["...", "..x", "x..", ".x", "x.", "..../...", "..../a", "-", "-d/--", "a/.b/..c/...d"]
    files = {r: f"{mode} {r}".encode() for r in rels}
    with pipe:
        for r, d in files.items():
            write_raw(pipe, r, d)
        run(pipe, files, set(), caplog)


@pytest.mark.parametrize("mode", MODES)
def test_odd_zone_directory_and_collection(redis_server: Any, redis_conn: Any, irods: Any, mode: str,
                                           caplog: pytest.LogCaptureFixture) -> None:
    """The zone's own directory and collection hold spaces, quotes, `%`, `_`, `&`, `\\`."""
    with outside_pytest_tmp() as tmp:
        root = tmp / "land 'in\\g' 50%_&"
        from tests.landing import server_readable
        coll = f"{irods.home}/odd coll 'q' 50%_&\\ {tmp.name}"
        pipe = Pipeline(tmp, redis_server.url, irods, root=server_readable(root),
                        zone={"mode": mode, "collection": coll})
        pipe.collection = coll
        files = {"a b": b"a b", "d'/e%": b"e", "x": b"x"}
        try:
            with pipe:
                for r, d in files.items():
                    write_raw(pipe, r, d)
                run(pipe, files, set(), caplog)
                update(pipe, "x", b"x again")
            if mode == "put":
                t = names.target_for(pipe.collection, "x").path
                assert checksums(pipe)[t + ".~1~"] == sha2(b"x")
        finally:
            pipe.cleanup()


def update(pipe: Pipeline, rel: str, data: bytes) -> None:
    """Write a new version of a landing file and wait until iRODS has it under its name."""
    from tests.pipeline_harness import until

    write_raw(pipe, rel, data)
    t = names.target_for(pipe.collection, rel).path
    until(pipe, lambda: checksums(pipe).get(t) == sha2(data), what=f"{rel!r} to be updated")


def test_a_physical_path_longer_than_irods_takes_in_a_register_zone(redis_server: Any, redis_conn: Any, irods: Any,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    """The logical path fits, the landing file's own path (deep zone directory) does not: a register zone
    fails it once, saying why."""
    from tests.landing import server_readable

    caplog.set_level(logging.INFO)
    with outside_pytest_tmp() as tmp:
        root = tmp / "/".join(["z" * 200] * 3)  # ~630 bytes of zone directory
        pipe = Pipeline(tmp, redis_server.url, irods, root=server_readable(root), zone={"mode": "register"})
        rel = "/".join(["r" * 200] * 2) + "/" + "f" * 100  # logical ~560, physical ~1130 bytes
        assert len(os.fsencode(root / rel)) > names.MAX_PATH_BYTES
        names.target_for(pipe.collection, rel)
        files = {f"{rel}{i}": b"long %d" % i for i in range(4)} | {f"short{i}": b"short %d" % i for i in range(4)}
        try:
            with pipe:
                write_raw(pipe, "first", b"first")  # the first file goes the one-call way; then in bulk
                pipe.drain(min_done=1)
                for r, d in files.items():
                    write_raw(pipe, r, d)
                run(pipe, files | {"first": b"first"}, {r for r in files if r.startswith(rel)}, caplog,
                    "its physical path is 1")
        finally:
            pipe.cleanup()


# a probe of the product on the real server, not of the stand-in's likeness: not run again in the second pass
pytestmark = pytest.mark.realonly
