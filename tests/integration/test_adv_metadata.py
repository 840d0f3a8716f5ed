"""Session 5 probe, metadata: path AVUs, JSON sidecars (per file and per directory), the provenance set, on
the real iRODS, each answer read back with GenQuery. Sidecars that arrive late or change after their file was
ingested, new versions and their AVUs, odd but valid JSON, every kind of sidecar that cannot be taken (each
fails its file with the reason, nothing of it in iRODS), sidecars that are symlinks, directories, or of a
sidecar, regex groups that match nothing, and a register zone whose worker died between the registration
and the AVU call."""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from irods.column import Like
from irods.models import Collection, DataObject, DataObjectMeta

from tests.integration.test_ingest import env  # noqa: F401 - the fixture
from tests.integration.test_metadata_avus import coll_avus, everything, failures
from tests.pipeline_harness import Pipeline, pipelines, until, write

pytestmark = pytest.mark.realonly

SIDE = {"sidecar": "{name}.metadata.json"}
OLD = time.time() - 600  # a sidecar's mtime that is not "being written"


@pytest.fixture
def make_pipe(tmp_path: Path, redis_server: Any, redis_conn: Any, irods: Any) -> Iterator[Callable[..., Pipeline]]:
    with pipelines(tmp_path, redis_server.url, irods) as make:
        yield make


def avus_of(pipe: Pipeline, rel: str) -> list[tuple[str, str, str]]:
    """An object's AVUs as GenQuery lists them (a duplicate would show twice), sorted."""
    path = f"{pipe.collection}/{rel}"
    coll, _, name = path.rpartition("/")
    with pipe.irods.session() as s:
        q = s.query(DataObjectMeta.name, DataObjectMeta.value, DataObjectMeta.units) \
            .filter(Collection.name == coll).filter(DataObject.name == name)
        return sorted((r[DataObjectMeta.name], r[DataObjectMeta.value], r[DataObjectMeta.units] or "") for r in q)


def user_avus(pipe: Pipeline, rel: str) -> list[tuple[str, str, str]]:
    """Without the provenance (ingestd::...)."""
    return [t for t in avus_of(pipe, rel) if not t[0].startswith("ingestd::")]


def attr_values(pipe: Pipeline, rel: str, attr: str) -> list[str]:
    return [v for a, v, _ in avus_of(pipe, rel) if a == attr]


def old(p: Path) -> Path:
    os.utime(p, (OLD, OLD), follow_symlinks=False)
    return p


def done_at(pipe: Pipeline, rel: str, p: Path) -> bool:
    """Is the file's current version (size, mtime) done in the ledger?"""
    e = pipe.ledger.get(pipe.name, rel)
    st = p.stat()
    return e is not None and e.state == b"D" and e.same_version(st.st_size, st.st_mtime_ns)


def stats(pipe: Pipeline) -> dict[str, int]:
    return pipe.ledger.stats(pipe.name)


# --- sidecars and time: late, rewritten, new versions ------------------------------------------------------

def test_a_sidecar_rewritten_or_arriving_after_its_file_changes_nothing(make_pipe: Callable[..., Pipeline]) -> None:
    """README: 'A sidecar changed after its file was ingested changes nothing in iRODS' (and 'write the
    sidecar first'): neither a rewritten sidecar nor one that arrives late re-tags the object, and the
    sidecars are never objects."""
    pipe = make_pipe(**SIDE)
    write(pipe, "r/a.dat.metadata.json", {"stage": "raw"})
    write(pipe, "r/a.dat", "a")
    write(pipe, "r/b.dat", "b")
    with pipe:
        pipe.drain(min_done=2)
        write(pipe, "r/a.dat.metadata.json", {"stage": "final", "extra": 1})
        write(pipe, "r/b.dat.metadata.json", {"stage": "late"})
        time.sleep(0.5)
        pipe.drain(min_done=2)
    assert user_avus(pipe, "r/a.dat") == [("stage", "raw", "")]
    assert user_avus(pipe, "r/b.dat") == []
    assert everything(pipe) == {"r/a.dat", "r/b.dat"}
    assert failures(pipe) == {} and stats(pipe)["done"] == 2


@pytest.mark.parametrize("how", ["keep", "replace", "register"])
def test_a_new_version_has_its_own_avus_and_the_earlier_keeps_its_own(
        make_pipe: Callable[..., Pipeline], how: str) -> None:
    """Each version's object has its own sidecar's and path's AVUs and one provenance set. AVUs someone added
    to the object by hand: still the zone's object (no conflict); with versions = "keep" they stay on the
    earlier version (name.~1~); an object replaced (versions = "replace", a register zone's new registration)
    is a new object: they are not carried over (README)."""
    from irods.meta import iRODSMeta

    extra = {"mode": "register", "resource": "demoResc"} if how == "register" else {"versions": how}
    pipe = make_pipe(path_regex=r"^(?P<run>[^/]+)/", **SIDE, **extra)
    data = write(pipe, "R1/x.dat", "version one")
    write(pipe, "R1/x.dat.metadata.json", {"v": "1", "only_in_one": True})
    with pipe:
        pipe.drain(min_done=1)
        with pipe.irods.session() as s:
            s.metadata.add(DataObject, f"{pipe.collection}/R1/x.dat", iRODSMeta("curated", "yes", "by hand"))
        write(pipe, "R1/x.dat.metadata.json", {"v": "2"})
        data.write_text("version two, longer")
        until(pipe, lambda: attr_values(pipe, "R1/x.dat", "v") == ["2"], what="the second version")
    assert failures(pipe) == {}
    new = avus_of(pipe, "R1/x.dat")
    assert [t for t in new if not t[0].startswith("ingestd::") or t[0] == "ingestd::run"] == \
        [("ingestd::run", "R1", ""), ("v", "2", "")]
    one_each = [a for a, _, _ in new if a.startswith("ingestd::")]
    assert sorted(one_each) == sorted(set(one_each)), new  # no provenance attribute twice
    assert ("ingestd::size", "19", "bytes") in new
    if how == "keep":
        kept = avus_of(pipe, "R1/x.dat.~1~")
        assert [t for t in kept if not t[0].startswith("ingestd::")] == \
            [("curated", "yes", "by hand"), ("only_in_one", "true", ""), ("v", "1", "")]
        assert ("ingestd::size", "11", "bytes") in kept and "ingestd::superseded" in {a for a, _, _ in kept}
        assert everything(pipe) == {"R1/x.dat", "R1/x.dat.~1~"}
    else:
        assert everything(pipe) == {"R1/x.dat"}


# --- what a sidecar may hold ----------------------------------------------------------------------------------

def test_odd_but_valid_sidecars_reach_irods_exactly(make_pipe: Callable[..., Pipeline]) -> None:
    """Unicode at iRODS' byte limit, XML's special characters, whitespace, tab and newline, a byte order mark,
    numbers kept as written, an attribute that only looks like the provenance, the same AVU twice (within the
    sidecar's list, and from the path and the sidecar): each reaches iRODS as written, once."""
    pipe = make_pipe(path_regex=r"^(?P<run>[^/]+)/", avu_prefix="", **SIDE)
    emoji = "\U0001f600" * 675  # 2700 bytes of UTF-8: the limit itself
    doc = ('\ufeff{"run": "R9", "xml": "a&b<c>\'\\"`]]>&amp;", "space": "  padded  ", "blank": "   ", '
           '"tab\\there": "line\\nbreak\\ttab", "big": 123456789012345678901234567890, "tiny": -1.0e-400, '
           '"flag": false, "ingestd::zone ": "not the zone", "Ingestd::zone": "case", "emoji": "' + emoji + '", '
           '"\u00e9t\u00e9": "\u65e5\u672c", "twice": ["same", "same", {"value": "same"}], '
           '"u": {"value": "1", "units": "\u00b5m"}}')
    write(pipe, "R9/f.dat.metadata.json", doc.encode())
    write(pipe, "R9/f.dat", "f")
    with pipe:
        pipe.drain(min_done=1)
    assert failures(pipe) == {}
    got = user_avus(pipe, "R9/f.dat")
    assert got == sorted([
        ("run", "R9", ""), ("xml", "a&b<c>'\"`]]>&amp;", ""), ("space", "  padded  ", ""), ("blank", "   ", ""),
        ("tab\there", "line\nbreak\ttab", ""), ("big", "123456789012345678901234567890", ""),
        ("tiny", "-1.0e-400", ""), ("flag", "false", ""), ("Ingestd::zone", "case", ""), ("emoji", emoji, ""),
        ("\u00e9t\u00e9", "\u65e5\u672c", ""), ("twice", "same", ""), ("u", "1", "\u00b5m")]), got
    everything_ = avus_of(pipe, "R9/f.dat")
    assert ("ingestd::zone ", "not the zone", "") in everything_ and ("ingestd::zone", "z", "") in everything_
    # found by GenQuery on the unicode value
    with pipe.irods.session() as s:
        q = s.query(DataObject.name).filter(DataObjectMeta.name == "\u00e9t\u00e9") \
            .filter(DataObjectMeta.value == "\u65e5\u672c").filter(Like(Collection.name, pipe.collection + "%"))
        assert [r[DataObject.name] for r in q] == ["f.dat"]


BAD: list[tuple[str, bytes | None, str]] = [  # name, sidecar (None: made by the test), what the reason says
    ("array", b'["a", "b"]', "expected a JSON object"),
    ("bom-array", "\ufeff[]".encode(), "expected a JSON object"),
    ("number", b"42", "expected a JSON object"),
    ("empty", b"", "not valid JSON"),
    ("utf16", '{"a": "b"}'.encode("utf-16"), "not UTF-8"),
    ("dupkey", b'{"a": 1, "a": 2}', "'a' appears twice"),
    ("nested", b'{"a": {"b": {"c": 1}}}', "an object needs \"value\""),
    ("listlist", b'{"a": [1, [2]]}', "a list inside a list"),
    ("deep", b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deeply"),
    ("null-in-list", b'{"a": ["x", null]}', "null is not a value"),
    ("inf", b'{"a": Infinity}', "Infinity is not a value"),
    ("surrogate", b'{"a": "\\ud800"}', "not valid UTF-8 text"),
    ("control", b'{"a": "x\\u0001"}', "U+0001, which the iRODS protocol (XML) cannot carry"),
    ("fffe", b'{"a\\ufffe": "x"}', "U+FFFE"),
    ("long-attr", b'{"' + "\u00e9".encode() * 1351 + b'": "x"}', "2702 bytes long"),
    ("long-value", b'{"a": ["ok", "' + b"v" * 2701 + b'"]}', "value of 'a' is 2701 bytes long"),
    ("long-units", b'{"a": {"value": 1, "units": "' + b"u" * 251 + b'"}}', "units of 'a' is 251 bytes long"),
    ("superseded", b'{"ingestd::superseded": "never"}', "'ingestd::superseded' is irods-ingestd's own"),
    ("original", b'{"ingestd::original_name": "00"}', "irods-ingestd's own"),
    ("provenance", b'{"ingestd::provenance": "collection"}', "irods-ingestd's own"),
    ("empty-attr", b'{"": "x"}', "empty attribute"),
    ("huge-attr", b'{"' + b"k" * 100_000 + b'": "x"}', "is 100000 bytes long"),
    ("huge-dup", b'{"' + b"k" * 2000 + b'": 1, "' + b"k" * 2000 + b'": 2}', "appears twice"),
    ("huge", None, "bytes long (at most 1048576)"),
    ("many", b'{"a": [' + b",".join(b"%d" % i for i in range(5001)) + b']}', "gives more than 5000 AVUs"),
    ("directory", None, "is not a regular file"),
    ("fifo", None, "is not a regular file"),
]


def test_every_sidecar_that_cannot_be_taken_fails_its_file_alone(make_pipe: Callable[..., Pipeline]) -> None:
    pipe = make_pipe(**SIDE)
    for name, doc, _ in BAD:
        side = pipe.root / f"b/{name}.metadata.json"
        side.parent.mkdir(exist_ok=True)
        if doc is not None:
            side.write_bytes(doc)
        elif name == "huge":
            side.write_bytes(b'{"a": "' + b"x" * (1 << 20) + b'"}')
        elif name == "directory":
            side.mkdir()
        else:
            os.mkfifo(side)
        old(side)
        write(pipe, f"b/{name}", name)
    write(pipe, "b/good", "good")
    with pipe:
        until(pipe, lambda: stats(pipe)["failed"] == len(BAD) and stats(pipe)["done"] == 1,
              what="every bad one failed, the good one done")
    f = dict(pipe.ledger.failures(pipe.name))  # every one (status lists the first 20)
    for name, _, says in BAD:
        reason = f[f"b/{name}"]["reason"]
        assert reason.startswith(f"sidecar {pipe.root}/b/{name}.metadata.json: ") and says in reason, (name, reason)
        assert f[f"b/{name}"]["kind"] == "metadata"
        assert len(reason) < 600, (name, len(reason))  # a sidecar's text is quoted short: not 100 kB a log line
    assert everything(pipe) == {"b/good"}


def test_a_bad_sidecar_dated_in_the_future_fails_its_file(make_pipe: Callable[..., Pipeline]) -> None:
    """A bad sidecar 'changed in the last 3 s' is waited for; one whose mtime is in the future (a clock ahead,
    `touch -d tomorrow`, an archive's dates) must not be taken as being written for ever: the file would settle
    again and again, never failed and never ingested. Fixed and retried, the file goes in with its AVUs."""
    pipe = make_pipe(**SIDE)
    side = write(pipe, "f/x.dat.metadata.json", '{"a": ')
    future = time.time() + 86400
    os.utime(side, (future, future))
    write(pipe, "f/x.dat", "x")
    with pipe:
        until(pipe, lambda: stats(pipe)["failed"] == 1, timeout=20, what="the file failed")
        assert "not valid JSON" in failures(pipe)["f/x.dat"]["reason"]
        assert everything(pipe) == set()
        side.write_text('{"a": "fixed"}')  # README: fix it and run `irods-ingestd retry`
        assert pipe.ledger.retry_failed([pipe.name]) == 1
        until(pipe, lambda: stats(pipe)["done"] == 1, what="the file, once its sidecar was fixed")
    assert user_avus(pipe, "f/x.dat") == [("a", "fixed", "")] and failures(pipe) == {}


def test_the_avu_count_limit_itself_is_accepted() -> None:
    from irods_ingestd.sidecars import MAX_SIDECAR_AVUS, parse

    assert len(parse(b'{"a": [' + b",".join(b"%d" % i for i in range(MAX_SIDECAR_AVUS)) + b']}')) == 5000


# --- which files are sidecars ---------------------------------------------------------------------------------

def test_sidecars_of_sidecars_orphans_and_directories_named_like_sidecars(make_pipe: Callable[..., Pipeline]) -> None:
    pipe = make_pipe(dir_sidecar="metadata.json", **SIDE)
    write(pipe, "o/a.dat", "a")
    write(pipe, "o/a.dat.metadata.json", {"k": "a"})
    write(pipe, "o/a.dat.metadata.json.metadata.json", {"k2": "of the sidecar"})  # a sidecar's sidecar: nothing
    write(pipe, "o/orphan.dat.metadata.json", {"k": "its file never comes"})
    write(pipe, "o/b.dat", "b")
    write(pipe, "o/b.dat.metadata.json/inner.dat", "in a directory named like b.dat's sidecar")
    write(pipe, "p/metadata.json/deep.dat", "in a directory named like the directory sidecar")
    write(pipe, "p/c.dat", "c")
    for d in ("o/b.dat.metadata.json", "p/metadata.json"):
        old(pipe.root / d)
    with pipe:
        until(pipe, lambda: stats(pipe)["done"] == 3 and stats(pipe)["failed"] == 2, what="3 done, 2 failed")
        pipe.drain(min_done=3)
    assert everything(pipe) == {"o/a.dat", "o/b.dat.metadata.json/inner.dat", "p/metadata.json/deep.dat"}
    assert user_avus(pipe, "o/a.dat") == [("k", "a", "")]
    f = dict(pipe.ledger.failures(pipe.name))
    assert sorted(f) == ["o/b.dat", "p/c.dat"]
    assert f["o/b.dat"]["reason"] == f"sidecar {pipe.root}/o/b.dat.metadata.json: is not a regular file"
    assert f["p/c.dat"]["reason"] == f"sidecar {pipe.root}/p/metadata.json: is not a regular file"


def test_a_symlinked_sidecar_in_a_zone_that_skips_symlinks_fails_its_file(
        make_pipe: Callable[..., Pipeline], tmp_path: Path) -> None:
    outside = tmp_path / "outside.json"
    outside.write_text('{"from": "outside"}')
    pipe = make_pipe(**SIDE)
    write(pipe, "s/a.dat", "a")
    (pipe.root / "s/a.dat.metadata.json").symlink_to(outside)
    old(pipe.root / "s/a.dat.metadata.json")
    with pipe:
        until(pipe, lambda: stats(pipe)["failed"] == 1, what="the file failed")
    assert dict(pipe.ledger.failures(pipe.name))["s/a.dat"]["reason"] == \
        f"sidecar {pipe.root}/s/a.dat.metadata.json: is a symlink (the zone has symlinks = \"skip\")"
    assert everything(pipe) == set()


def test_symlinked_sidecars_in_a_zone_that_follows_symlinks(make_pipe: Callable[..., Pipeline], tmp_path: Path) -> None:
    """Followed to a file outside the zone; a symlink to nothing, or a loop, fails its file saying so (the
    user meant a sidecar: the file is not ingested without its AVUs)."""
    outside = tmp_path / "outside.json"
    outside.write_text('{"from": "outside"}')
    pipe = make_pipe(symlinks="follow", **SIDE)
    for rel in ("l/a.dat", "l/dangling.dat", "l/loop.dat"):
        write(pipe, rel, rel)
    (pipe.root / "l/a.dat.metadata.json").symlink_to(outside)
    (pipe.root / "l/dangling.dat.metadata.json").symlink_to(tmp_path / "nothing.json")
    (pipe.root / "l/loop.dat.metadata.json").symlink_to(pipe.root / "l/loop.dat.metadata.json")
    for rel in ("a", "dangling", "loop"):
        old(pipe.root / f"l/{rel}.dat.metadata.json")
    with pipe:
        until(pipe, lambda: stats(pipe)["done"] == 1 and stats(pipe)["failed"] == 2, what="1 done, 2 failed")
    assert user_avus(pipe, "l/a.dat") == [("from", "outside", "")]
    f = dict(pipe.ledger.failures(pipe.name))
    assert f["l/dangling.dat"]["reason"] == \
        f"sidecar {pipe.root}/l/dangling.dat.metadata.json: is a symlink to nothing"
    assert f["l/loop.dat"]["reason"].startswith(f"sidecar {pipe.root}/l/loop.dat.metadata.json: cannot be read: ")
    assert "skip" not in f["l/loop.dat"]["reason"]
    assert everything(pipe) == {"l/a.dat"}


# --- the path regex -----------------------------------------------------------------------------------------

def test_path_regex_groups_that_match_nothing_give_no_avu(make_pipe: Callable[..., Pipeline]) -> None:
    """A group that did not take part, or matched an empty text, gives no AVU (iRODS refuses an empty
    value); a path the regex does not match is ingested without path AVUs; the value of a mapped name is its
    mapped form (what ingestd::source_path shows); path and sidecar giving the same AVU: once."""
    regex = r"^(?P<run>[^/]*)/(?:(?P<lane>L\d+)/)?(?P<sample>[^/.]*)(?P<ext>\.fq)?$"
    pipe = make_pipe(path_regex=regex, avu_prefix="p:", **SIDE)
    write(pipe, "R1/L001/s1.fq", "1")
    write(pipe, "R1/s2", "2")
    write(pipe, "R1/.fq", "3")
    write(pipe, "R1/deep/er/x.txt", "4")
    (pipe.root / "R\xff".encode("latin-1").decode("utf-8", "surrogateescape")).mkdir()
    with open(os.path.join(os.fsencode(pipe.root), b"R\xff/s5"), "wb") as f:
        f.write(b"5")
    write(pipe, "R1/s2.metadata.json", {"p:run": "R1", "p:sample": ["s2", "other"]})
    with pipe:
        pipe.drain(min_done=5)
    assert failures(pipe) == {}
    assert user_avus(pipe, "R1/L001/s1.fq") == \
        [("p:ext", ".fq", ""), ("p:lane", "L001", ""), ("p:run", "R1", ""), ("p:sample", "s1", "")]
    assert user_avus(pipe, "R1/s2") == [("p:run", "R1", ""), ("p:sample", "other", ""), ("p:sample", "s2", "")]
    assert user_avus(pipe, "R1/.fq") == [("p:ext", ".fq", ""), ("p:run", "R1", "")]
    assert user_avus(pipe, "R1/deep/er/x.txt") == []
    mapped = avus_of(pipe, "R%FF/s5")
    assert ("p:run", "R%FF", "") in mapped and ("p:sample", "s5", "") in mapped
    assert ("ingestd::original_name", "52ff2f7335", "hex") in mapped


# --- register zones: a worker that dies between the registration and the AVU call --------------------------

class Killed(BaseException):
    """The worker died here (SIGKILL): nothing after this point runs, no clean-up either."""


def test_a_register_worker_killed_before_its_avu_call_leaves_nothing_half_tagged(
        env: Any, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """The one-call way and the bulk way each die right after registering; the next worker completes every
    object: each gets its whole set of AVUs (provenance, path, sidecar), each once, nothing else."""

    from irods_ingestd.ingest import bulk, transfer
    from irods_ingestd.zoneparts.avus import Avus
    from tests.integration.test_ingest import objects_under

    cfg = Avus(path_regex=r"^(?P<run>[^/]+)/", sidecar="{name}.json")
    real_tag, real_finish, real_send = transfer.tag_registered, bulk._finish, bulk._send
    sent: list[int] = []

    def tag(*a: Any, **k: Any) -> None:
        raise Killed()

    def finish(ctx: Any, session: Any, zone: Any, r: Any) -> Any:
        if r.item.rel == "k/f3.dat":
            raise Killed()
        return real_finish(ctx, session, zone, r)

    monkeypatch.setattr(transfer, "tag_registered", tag)
    monkeypatch.setattr(bulk, "_send", lambda s, rows, *a: (sent.append(len(rows)), real_send(s, rows, *a)))
    items = []
    for i in range(6):
        items.append(env.write(f"k/f{i}.dat", os.urandom(100 + i)))
        (env.root / f"k/f{i}.dat.json").write_text(json.dumps({"index": i, "tags": ["x", "y"]}))
    with pytest.raises(Killed):  # a first worker: the one-call way dies after registering f0
        env.run(env.ctx(mode="register", resource="demoResc", avus=cfg), items[:1])
    monkeypatch.setattr(transfer, "tag_registered", real_tag)
    monkeypatch.setattr(bulk, "_finish", finish)
    ctx = env.ctx(mode="register", resource="demoResc", avus=cfg)
    ctx.hash_scheme = "sha2"  # as a worker that ingested before: the bulk way at once
    with pytest.raises(Killed):  # a second: f1..f5 in one bulk call; it dies before f3's AVUs
        env.run(ctx, items[1:])
    assert sent == [5], sent
    with env.session() as s:
        registered = objects_under(s, env.coll)
        assert len(registered) == 6, registered  # all six registered, some without their AVUs
        bare = sorted(p.rpartition("/")[2] for p in registered if not s.metadata.get(DataObject, p))
        assert bare == ["f0.dat", "f3.dat", "f4.dat", "f5.dat"], bare
    monkeypatch.setattr(bulk, "_finish", real_finish)
    got = env.run(env.ctx(mode="register", resource="demoResc", avus=cfg), items)
    assert got["failed"] == 0, got
    with env.session() as s:
        for i in range(6):
            path = f"{env.coll}/k/f{i}.dat"
            avus = sorted((m.name, m.value) for m in s.metadata.get(DataObject, path))
            names_ = [a for a, _ in avus]
            user = [(a, v) for a, v in avus if not a.startswith("ingestd::") or a == "ingestd::run"]
            assert user == [("index", str(i)), ("ingestd::run", "k"), ("tags", "x"), ("tags", "y")], (path, avus)
            prov = [a for a in names_ if a.startswith("ingestd::") and a != "ingestd::run"]
            assert sorted(prov) == sorted(set(prov)) and "ingestd::source_path" in prov, (path, avus)


# --- directory sidecars: collection AVUs ----------------------------------------------------------------------

def test_directory_sidecars_with_the_zone_provenance_on_the_collection(make_pipe: Callable[..., Pipeline]) -> None:
    """provenance = "collection" and a sidecar in the zone's top directory: the zone's collection carries both;
    a changed sidecar replaces its own attributes only (never the provenance), a removed one changes nothing;
    the objects get their file's sidecar AVUs and no provenance."""
    pipe = make_pipe(provenance="collection", dir_sidecar="meta.json", **SIDE)
    write(pipe, "meta.json", {"project": "P1", "ingestd::zone ": "only looks like it"})
    write(pipe, "a.dat", "a")
    write(pipe, "a.dat.metadata.json", {"k": "v"})
    with pipe:
        pipe.drain(min_done=1)
        first = coll_avus(pipe, "")
        write(pipe, "meta.json", {"project": ["P2", "P3"]})
        write(pipe, "b.dat", "b")
        until(pipe, lambda: ("project", "P2", "") in coll_avus(pipe, ""), what="the changed sidecar applied")
        (pipe.root / "meta.json").unlink()
        write(pipe, "c.dat", "c")
        until(pipe, lambda: stats(pipe)["done"] == 3, what="c.dat")
        pipe.drain()
    assert ("project", "P1", "") in first and ("ingestd::zone", "z", "") in first
    last = coll_avus(pipe, "")
    assert [t for t in last if not t[0].startswith("ingestd::")] == [("project", "P2", ""), ("project", "P3", "")]
    assert ("ingestd::zone", "z", "") in last and ("ingestd::provenance", "collection", "") in last
    assert ("ingestd::zone ", "only looks like it", "") in last  # not named again: left alone
    assert avus_of(pipe, "a.dat") == [("k", "v", "")]
    assert avus_of(pipe, "b.dat") == [] and avus_of(pipe, "c.dat") == []
    assert everything(pipe) == {"a.dat", "b.dat", "c.dat"}


def test_a_new_version_with_a_bad_sidecar_fails_and_leaves_the_earlier_version_whole(
        make_pipe: Callable[..., Pipeline]) -> None:
    pipe = make_pipe(**SIDE)
    data = write(pipe, "n/x.dat", "version one")
    side = write(pipe, "n/x.dat.metadata.json", {"v": "1"})
    with pipe:
        pipe.drain(min_done=1)
        before = avus_of(pipe, "n/x.dat")
        side.write_text('{"v": "2", "v": "3"}')
        old(side)
        data.write_text("version two")
        until(pipe, lambda: stats(pipe)["failed"] == 1, what="the second version failed")
        assert "'v' appears twice" in dict(pipe.ledger.failures(pipe.name))["n/x.dat"]["reason"]
        assert everything(pipe) == {"n/x.dat"} and avus_of(pipe, "n/x.dat") == before
        side.unlink()  # fixed by removing it: the third version goes in without sidecar AVUs
        data.write_text("version three")
        until(pipe, lambda: done_at(pipe, "n/x.dat", data), what="the third version")
    assert user_avus(pipe, "n/x.dat") == [] and user_avus(pipe, "n/x.dat.~1~") == [("v", "1", "")]
    assert everything(pipe) == {"n/x.dat", "n/x.dat.~1~"}


@contextmanager
def slow_writer(path: Path) -> Iterator[None]:
    """A writer at work on `path` (a byte every 50 ms, never quiet for a settle) until the block ends."""
    stop = threading.Event()

    def run() -> None:
        with open(path, "wb") as f:
            while not stop.is_set():
                f.write(b"x")
                f.flush()
                stop.wait(0.05)

    t = threading.Thread(target=run)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join()


# --- sidecars and after-actions -----------------------------------------------------------------------------------

@pytest.mark.slow  # documents what the README says (the file's time: under 90 s)
def test_a_sidecar_in_a_delete_zone_outlives_its_file_and_tags_the_next_one(make_pipe: Callable[..., Pipeline]) -> None:
    """README: sidecars are not ingested, so no after-action touches them. A later file of the same name (an
    instrument's RunInfo.xml) meets the sidecar left there and gets its AVUs (documented)."""
    pipe = make_pipe(after="delete", after_hold="0s", **SIDE)
    data = write(pipe, "d/x.dat", "one")
    write(pipe, "d/x.dat.metadata.json", {"run": "1"})
    with pipe:
        until(pipe, lambda: not data.exists(), what="x.dat ingested and deleted")
        write(pipe, "d/x.dat", "two, with no sidecar of its own")
        until(pipe, lambda: not data.exists(), what="the second x.dat ingested and deleted")
    assert (pipe.root / "d/x.dat.metadata.json").exists()
    assert user_avus(pipe, "d/x.dat") == [("run", "1", "")] and user_avus(pipe, "d/x.dat.~1~") == [("run", "1", "")]


def test_an_ingested_sidecar_is_not_deleted_before_its_file_took_its_avus(make_pipe: Callable[..., Pipeline]) -> None:
    """sidecar_ingest = true in a delete zone: the sidecar, written first as the README asks, settles first and
    is ingested; deleted then, its data file (still being written) found no sidecar and went in without its
    AVUs. It stays until its file is gone, then goes too (the walk brings it back)."""
    pipe = make_pipe(after="delete", after_hold="0s", sidecar_ingest=True, **SIDE)
    side = write(pipe, "i/x.dat.metadata.json", {"run": "7"})
    with pipe:
        with slow_writer(pipe.root / "i/x.dat"):
            until(pipe, lambda: stats(pipe)["done"] >= 1, timeout=20, what="the sidecar ingested")
            time.sleep(0.5)
        until(pipe, lambda: not (pipe.root / "i/x.dat").exists(), what="x.dat ingested and deleted")
        until(pipe, lambda: not side.exists(), what="then the sidecar deleted too")
    assert everything(pipe) == {"i/x.dat", "i/x.dat.metadata.json"}
    assert user_avus(pipe, "i/x.dat") == [("run", "7", "")]


def test_an_ingested_directory_sidecar_moved_first_gave_its_collection_its_avus(
        make_pipe: Callable[..., Pipeline], tmp_path: Path) -> None:
    """The same with a directory's sidecar: moved before the directory's file came, it gave its AVUs to its
    collection all the same (its own ingest applies it)."""
    done = tmp_path / "done"
    pipe = make_pipe(after="move", move_to=str(done), after_hold="0s", sidecar_ingest=True, dir_sidecar="meta.json")
    side = write(pipe, "m/meta.json", {"project": "P9"})
    with pipe:
        with slow_writer(pipe.root / "m/a.dat"):
            until(pipe, lambda: stats(pipe)["done"] >= 1, timeout=20, what="the sidecar ingested")
            time.sleep(0.5)
        until(pipe, lambda: (done / "m/a.dat").exists() and (done / "m/meta.json").exists(), what="both moved")
    assert not side.exists()
    assert coll_avus(pipe, "m") == [("project", "P9", "")]
    assert everything(pipe) == {"m/a.dat", "m/meta.json"}


@pytest.mark.parametrize("mode", ["put", "register"])
def test_a_touched_file_whose_sidecar_went_bad_after_its_ingest(make_pipe: Callable[..., Pipeline], mode: str) -> None:
    """The object is there with the same bytes: nothing is written, so the sidecar is not needed and the
    touched file is done, with its object and AVUs as they were, in either mode (README: a sidecar changed
    after its file was ingested changes nothing in iRODS, even when the file is touched)."""
    extra = {"mode": "register", "resource": "demoResc"} if mode == "register" else {}
    pipe = make_pipe(**SIDE, **extra)
    data = write(pipe, "t/a.dat", "same bytes")
    side = write(pipe, "t/a.dat.metadata.json", {"stage": "good"})
    with pipe:
        pipe.drain(min_done=1)
        before = avus_of(pipe, "t/a.dat")
        side.write_text('{"stage": ')
        old(side)
        os.utime(data, (OLD, OLD))
        until(pipe, lambda: done_at(pipe, "t/a.dat", data) or stats(pipe)["failed"] > 0, what="the touched file")
    assert dict(pipe.ledger.failures(pipe.name)) == {}
    assert avus_of(pipe, "t/a.dat") == before


def test_a_manifest_that_lists_the_sidecars_completes_its_delivery(make_pipe: Callable[..., Pipeline]) -> None:
    import hashlib

    pipe = make_pipe(complete_when="manifest", manifest="*.sha256", **SIDE)
    files = {"x.dat": b"data", "x.dat.metadata.json": b'{"run": "5"}'}
    for rel, data in files.items():
        write(pipe, f"dl/{rel}", data)
    write(pipe, "dl/MANIFEST.sha256", "".join(f"{hashlib.sha256(d).hexdigest()}  {r}\n" for r, d in files.items()))
    with pipe:
        until(pipe, lambda: stats(pipe)["done"] == 2, timeout=3, what="the delivery ingested")
    assert everything(pipe) == {"dl/x.dat", "dl/MANIFEST.sha256"}
    assert user_avus(pipe, "dl/x.dat") == [("run", "5", "")]


def test_a_sidecar_of_a_file_whose_name_is_mapped(make_pipe: Callable[..., Pipeline]) -> None:
    """A name with a byte that is not UTF-8: its sidecar is found by the same bytes, its AVUs reach the object
    under the mapped name beside its original_name; the directory's sidecar reaches the mapped collection."""
    pipe = make_pipe(dir_sidecar="meta.json", **SIDE)
    root = os.fsencode(pipe.root)
    os.makedirs(os.path.join(root, b"d\xfe"))
    for name, data in ((b"a\xff.dat", b"a"), (b"a\xff.dat.metadata.json", b'{"k": "\\u00e9"}'),
                       (b"meta.json", b'{"dir": "yes"}')):
        with open(os.path.join(root, b"d\xfe", name), "wb") as f:
            f.write(data)
    with pipe:
        pipe.drain(min_done=1)
    assert everything(pipe) == {"d%FE/a%FF.dat"}
    got = avus_of(pipe, "d%FE/a%FF.dat")
    assert ("k", "\u00e9", "") in got and ("ingestd::original_name", b"d\xfe/a\xff.dat".hex(), "hex") in got
    assert coll_avus(pipe, "d%FE") == [("dir", "yes", "")]


def test_extra_extractors_with_collection_provenance(make_pipe: Callable[..., Pipeline]) -> None:
    """metadata = ["owner"] (named twice) beside a path regex and a sidecar, provenance on the collection: the
    object gets its owner and group (an id where this host knows no name), the path and sidecar AVUs, each
    once, and no provenance AVU."""
    pipe = make_pipe(provenance="collection", metadata=["owner", "owner"], path_regex=r"^(?P<run>[^/]+)/",
                     avu_prefix="x:", **SIDE)
    data = write(pipe, "R2/o.dat", "o")
    os.chown(data, 54321, 54322)
    write(pipe, "R2/o.dat.metadata.json", {"k": ["1", "1"]})
    with pipe:
        pipe.drain(min_done=1)
    assert avus_of(pipe, "R2/o.dat") == [("ingestd::group", "54322", ""), ("ingestd::owner", "54321", ""),
                                         ("k", "1", ""), ("x:run", "R2", "")]


def test_two_workers_racing_on_a_changing_directory_sidecar_leave_its_last_version(
        env: Any, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """Worker A reads the directory's sidecar, worker B reads its next version and applies it, then A's
    (older) write lands: the collection must end with the sidecar as it is, not as A read it (B, which
    applied the last version, never looks again)."""
    from irods.models import CollectionMeta

    from irods_ingestd.ingest import usermeta
    from irods_ingestd.zoneparts.avus import Avus

    cfg = Avus(dir_sidecar="meta.json")
    side = env.root / "r/meta.json"
    side.parent.mkdir(parents=True)
    side.write_text('{"status": "running"}')
    a, b = env.write("r/a.dat", b"a"), env.write("r/b.dat", b"b")
    real_sync = usermeta.sync_collection
    calls: list[list[Any]] = []

    def sync(session: Any, coll: str, triples: Any) -> int:
        calls.append(triples)
        if len(calls) == 1:  # A, about to write what it read: meanwhile the sidecar changes and B applies it
            side.write_text('{"status": "done"}')
            os.utime(side, (time.time() + 1, time.time() + 1))
            assert env.run(env.ctx(avus=cfg), [b])["ingested"] == 1
        return real_sync(session, coll, triples)

    monkeypatch.setattr(usermeta, "sync_collection", sync)
    assert env.run(env.ctx(avus=cfg), [a])["ingested"] == 1
    with env.session() as s:
        q = s.query(CollectionMeta.name, CollectionMeta.value).filter(Collection.name == f"{env.coll}/r")
        assert sorted((r[CollectionMeta.name], r[CollectionMeta.value]) for r in q) == [("status", "done")]


# --- the dry run ---------------------------------------------------------------------------------------------

def test_plan_says_which_files_their_metadata_would_fail(make_pipe: Callable[..., Pipeline]) -> None:
    """`plan` says, per file, what the worker would do; a bad sidecar (the file's or its directory's) and a
    path the required regex does not match fail the file for real, so the plan says would_fail with that
    reason, not 'ingest'."""
    import subprocess
    import sys

    pipe = make_pipe(path_regex=r"^(?P<run>R\d+)/", path_regex_required=True, dir_sidecar="meta.json", **SIDE)
    for rel, data in (("R1/good.dat", "g"), ("R1/bad.dat", "b"), ("R1/bad.dat.metadata.json", '{"a": null}'),
                      ("R2/d.dat", "d"), ("R2/meta.json", "[]"), ("stray.dat", "s")):
        old(write(pipe, rel, data))
    r = subprocess.run([sys.executable, "-m", "irods_ingestd", "--log-target", "stderr", "-c",
                        str(pipe.config_path), "plan", "--json"], capture_output=True, text=True, timeout=60)
    assert r.returncode in (0, 1), r.stderr
    files = {f["path"]: f for f in json.loads(r.stdout)["zones"]["z"]["files"]}
    assert files["R1/good.dat"]["action"] == "ingest" and not files["R1/good.dat"]["would_fail"]
    for rel, says in (("R1/bad.dat", f"sidecar {pipe.root}/R1/bad.dat.metadata.json: 'a': null is not a value"),
                      ("R2/d.dat", f"sidecar {pipe.root}/R2/meta.json: expected a JSON object"),
                      ("stray.dat", "does not match the zone's path_regex")):
        assert files[rel]["would_fail"] and says in files[rel]["reason"], files[rel]
    assert "R1/bad.dat.metadata.json" not in files or files["R1/bad.dat.metadata.json"]["action"] == "excluded"


@pytest.mark.parametrize(("zone", "says"), [
    ({"complete_when": "marker", "marker": "RTAComplete.txt", "sidecar": "{name}.txt"},
     "zone 'z'.sidecar: the zone's marker 'RTAComplete.txt' would be taken for a sidecar"),
    ({"complete_when": "manifest", "manifest": "MANIFEST.json", "dir_sidecar": "MANIFEST.json"},
     "zone 'z'.dir_sidecar: the zone's manifest 'MANIFEST.json' would be taken for a sidecar"),
])
def test_a_marker_or_manifest_named_like_a_sidecar_is_refused(
        make_pipe: Callable[..., Pipeline], zone: dict[str, str], says: str) -> None:
    """Taken for a sidecar, the marker is never ingested nor seen by the daemon's gate: every directory of the
    zone waited for ever, silently (measured: a run with its marker was never ingested)."""
    from irods_ingestd.config import ConfigError

    with pytest.raises(ConfigError) as e:
        make_pipe(**zone)
    assert says in str(e.value)
    make_pipe(sidecar_ingest=True, **zone)  # ingested as objects, sidecars are seen: fine


def test_which_file_an_ingested_sidecar_waits_for(tmp_path: Path) -> None:
    from irods_ingestd.config import ZoneConfig
    from irods_ingestd.ingest.sidecar_after import needed_by
    from irods_ingestd.job import ZoneSpec
    from irods_ingestd.zoneparts.avus import Avus

    avus = Avus(sidecar="meta_{name}.json", sidecar_ingest=True)
    zone = ZoneSpec.from_config(ZoneConfig(name="z", path=str(tmp_path), collection="/c", after="delete",
                                           avus=avus))
    (tmp_path / "d").mkdir()
    (tmp_path / "d/x.dat").write_text("x")
    (tmp_path / "d/sub").mkdir()
    (tmp_path / "top").write_text("t")
    assert needed_by(zone, "d/meta_x.dat.json") == "d/x.dat"
    assert needed_by(zone, "meta_top.json") == "top"
    assert needed_by(zone, "d/meta_gone.json") is None  # its file is gone (or never came)
    assert needed_by(zone, "d/meta_sub.json") is None  # a directory takes no AVUs from it
    assert needed_by(zone, "d/x.dat") is None  # not a sidecar
    for other in (dataclasses.replace(zone, after="keep"),
                  dataclasses.replace(zone, avus=dataclasses.replace(avus, sidecar_ingest=False))):
        assert needed_by(other, "d/meta_x.dat.json") is None


@pytest.mark.parametrize(("zone", "says"), [
    ({"avu_prefix": "ingestd::source_", "path_regex": "(?P<path>.+)"},
     "zone 'z'.path_regex: group 'path' makes the attribute 'ingestd::source_path': attribute 'ingestd::source_path' "
     "is irods-ingestd's own"),
    ({"path_regex": "(?P<superseded>.+)"}, "group 'superseded' makes the attribute 'ingestd::superseded'"),
    ({"metadata": ["owner"], "path_regex": "(?P<owner>[^/]+)/"}, "'ingestd::owner' is irods-ingestd's own"),
])
def test_path_regex_groups_that_would_write_irods_ingestds_own_attributes_are_refused(
        make_pipe: Callable[..., Pipeline], zone: dict[str, Any], says: str) -> None:
    from irods_ingestd.config import ConfigError

    with pytest.raises(ConfigError) as e:
        make_pipe(**zone)
    assert says in str(e.value)
