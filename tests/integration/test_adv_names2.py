"""Session 4 probe, names and paths (2): landing names that look like irods-ingestd's own bookkeeping
(`.~N~` versions, temporary and set-aside names), names two files share once mapped, a data object and a
collection of one name, and iRODS' length limits, through the whole pipeline on the real iRODS."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import pytest

from irods_ingestd import names
from irods_ingestd.messages import MessageId
from tests.expect import sha2
from tests.integration.test_adv_names import (
    MODES,
    assert_ingested,
    checksums,
    failures,
    log_lines,
    outside_pytest_tmp,
    run,
    write_raw,
)
from tests.pipeline_harness import Pipeline, pipelines, until


@pytest.fixture
def make_pipe(redis_server: Any, redis_conn: Any, irods: Any) -> Any:
    with outside_pytest_tmp() as tmp, pipelines(tmp, redis_server.url, irods) as make:
        yield make


def rel_sums(pipe: Pipeline) -> dict[str, str]:
    return {p[len(pipe.collection) + 1:]: c for p, c in checksums(pipe).items()}


def update(pipe: Pipeline, rel: str, data: bytes) -> None:
    """Write a new version of a landing file (a new mtime) and wait until iRODS has it under its name."""
    write_raw(pipe, rel, data)
    t = names.target_for(pipe.collection, rel).path
    until(pipe, lambda: checksums(pipe).get(t) == sha2(data), what=f"{rel!r} to be updated")


# --- names like the `.~N~` versions ingestd keeps ---------------------------------------------------------
@pytest.mark.parametrize("name", ["x", "sq'uote", "back\\slash", "50%_off", "x.~1~", "new\nline"])
def test_versions_of_odd_names_keep_every_version_in_order(make_pipe: Any, name: str) -> None:
    pipe = make_pipe(temp_patterns=[])  # `*~` is a default temporary pattern
    with pipe:
        for v in (1, 2, 3):
            update(pipe, name, f"version {v}".encode())
    mapped = names.map_component(name)
    assert rel_sums(pipe) == {mapped: sha2(b"version 3"), f"{mapped}.~1~": sha2(b"version 1"),
                              f"{mapped}.~2~": sha2(b"version 2")}
    assert failures(pipe) == {}


def test_a_landing_file_named_like_a_version_never_clobbers_or_is_clobbered(
        make_pipe: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    pipe = make_pipe(temp_patterns=[])
    with pipe:
        # the user's own `a.~1~` first: ingestd's version of `a` must take the next free number
        write_raw(pipe, "a.~1~", b"user's a.~1~")
        update(pipe, "a", b"a v1")
        update(pipe, "a", b"a v2")
        # ingestd's version first (`b.~1~` is b v1): a landing `b.~1~` must not overwrite it
        update(pipe, "b", b"b v1")
        update(pipe, "b", b"b v2")
        write_raw(pipe, "b.~1~", b"user's b.~1~")
        pipe.drain()
    assert rel_sums(pipe) == {"a.~1~": sha2(b"user's a.~1~"), "a": sha2(b"a v2"), "a.~2~": sha2(b"a v1"),
                              "b": sha2(b"b v2"), "b.~1~": sha2(b"b v1")}
    fails = failures(pipe)
    assert list(fails) == ["b.~1~"] and "conflict" in fails["b.~1~"], fails
    assert len([m for m in log_lines(caplog, MessageId.FILE_FAILED) if "/b.~1~ (" in m]) == 1


@pytest.mark.parametrize("mode", MODES)
def test_landing_files_named_like_temporary_objects_are_left_alone(make_pipe: Any, mode: str) -> None:
    """`.x.ingestd-<tag>.part` with x's own tag: never ingested (reserved), never deleted, and x's copy
    through that very temporary name neither takes nor removes the landing file."""
    after = {"after": "delete", "after_hold": "0s"} if mode == "put" else {}
    pipe = make_pipe(mode=mode, temp_patterns=[], **after)
    t = names.target_for(pipe.collection, "x")
    reserved = [t.part_name, t.old_name, ".x.ingestd-del.abc123", ".ingestd-move.abc123"]
    with pipe:
        for r in reserved:
            write_raw(pipe, r, b"user's " + r.encode())
        for v in (b"x v1", b"x v2"):
            if mode == "put":
                write_raw(pipe, "x", v)
                until(pipe, lambda: not (pipe.root / "x").exists(), what=f"{v!r} ingested and deleted")
            else:
                update(pipe, "x", v)
        pipe.drain()
    assert rel_sums(pipe) == ({"x": sha2(b"x v2"), "x.~1~": sha2(b"x v1")} if mode == "put" else
                              {"x": sha2(b"x v2")})
    for r in reserved:
        assert (pipe.root / r).read_bytes() == b"user's " + r.encode()
    assert failures(pipe) == {}


# --- two landing names, one iRODS name --------------------------------------------------------------------
@pytest.mark.parametrize("pair", [(b"a\xff", b"a%FF"), (b"t\tb", b"t%09b"), (b"p%\xfe", b"p%25%FE")])
def test_two_landing_names_mapped_to_one_irods_name(make_pipe: Any, pair: tuple[bytes, bytes],
                                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    pipe = make_pipe()
    odd, literal = pair
    with pipe:
        r1 = write_raw(pipe, odd, b"the odd one")
        pipe.drain(min_done=1)
        r2 = write_raw(pipe, literal, b"the literal one")
        pipe.drain()
    assert names.target_for(pipe.collection, r1).path == names.target_for(pipe.collection, r2).path
    assert_ingested(pipe, {r1: b"the odd one"})  # the first one's object, not overwritten
    fails = failures(pipe)
    assert list(fails) == [r2] and "conflict" in fails[r2], fails
    assert f"(landing name {odd!r} before mapping)" in fails[r2], fails  # not only "made from <the same name>"
    assert len([m for m in log_lines(caplog, MessageId.FILE_FAILED) if f"/{names.display(r2)} (" in m]) == 1


# --- a data object and a collection of one name ------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_a_file_then_a_directory_of_the_same_name(make_pipe: Any, mode: str,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    pipe = make_pipe(mode=mode, after="delete" if mode == "put" else "keep", after_hold="0s")
    with pipe:
        write_raw(pipe, "a", b"file a")
        pipe.drain(min_done=1)
        if mode == "register":
            os.rename(pipe.root / "a", pipe.root / "a-was-a-file")  # the registered replica stays valid
        else:
            until(pipe, lambda: not (pipe.root / "a").exists(), what="a to be deleted")
        write_raw(pipe, "a/inner", b"inner")
        pipe.drain()
    assert rel_sums(pipe) == {"a": sha2(b"file a"), **({"a-was-a-file": sha2(b"file a")} if mode == "register" else {})}
    fails = failures(pipe)
    assert "a/inner" in fails, fails
    assert len([m for m in log_lines(caplog, MessageId.FILE_FAILED)
                                          if "/a/inner (" in m]) == 1


@pytest.mark.parametrize("mode", MODES)
def test_a_directory_then_a_file_of_the_same_name(make_pipe: Any, mode: str,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    pipe = make_pipe(mode=mode)
    with pipe:
        write_raw(pipe, "b/inner", b"inner")
        pipe.drain(min_done=1)
        os.rename(pipe.root / "b", pipe.root / "b-was-a-dir")
        write_raw(pipe, "b", b"file b")
        pipe.drain()
    assert rel_sums(pipe) == {"b/inner": sha2(b"inner"), "b-was-a-dir/inner": sha2(b"inner")}  # no temporary copy
    fails = failures(pipe)
    assert "collection" in fails.get("b", ""), fails
    assert len([m for m in log_lines(caplog, MessageId.FILE_FAILED) if "/b (" in m]) == 1


# --- lengths ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_names_of_255_bytes(make_pipe: Any, mode: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    pipe = make_pipe(mode=mode)
    rels = ["x" * 255, "\u00e9" * 127 + "x", "\U0001f600" * 63 + "xyz", "d" * 255 + "/" + "f" * 255]
    files = {r: r.encode()[:40] for r in rels}
    assert all(len(c.encode()) == 255 for r in rels for c in r.split("/"))
    with pipe:
        for r, d in files.items():
            write_raw(pipe, r, d)
        run(pipe, files, set(), caplog)


def test_a_new_version_of_a_255_byte_name_fails_once_and_keeps_the_old(
        make_pipe: Any, caplog: pytest.LogCaptureFixture) -> None:
    """`<name>.~1~` is 259 bytes: longer than a vault file name may be. It was retried for ever as an
    outage (UNIX_FILE_RENAME_ERR -528036, ENAMETOOLONG); now it fails once, and the old version stays."""
    caplog.set_level(logging.INFO)
    pipe = make_pipe()
    rel = "v" * 255
    with pipe:
        write_raw(pipe, rel, b"one")
        pipe.drain(min_done=1)
    write_raw(pipe, rel, b"the second")
    os.utime(pipe.root / rel, (time.time() - 60, time.time() - 60))  # settled
    (said,) = [f for f in plan(pipe) if f["path"] == rel]  # the dry run says it too
    assert said["action"] == "update" and said["would_fail"] and "cannot be kept" in said["reason"], said
    with pipe:
        until(pipe, lambda: rel in failures(pipe), timeout=20, what="the update to fail")
        pipe.drain()
    assert rel_sums(pipe) == {rel: sha2(b"one")}  # no temporary copy left either
    reason = failures(pipe)[rel]
    assert "cannot be kept as" in reason and "255 bytes" in reason, reason
    assert len([m for m in log_lines(caplog, MessageId.FILE_FAILED) if f"/{rel} (" in m]) == 1
    assert not [r for r in caplog.records if "iRODS unavailable" in r.getMessage()]


def plan(pipe: Pipeline) -> list[dict[str, Any]]:
    import json
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "irods_ingestd", "--log-target", "stderr", "-c", str(pipe.config_path),
                          "plan", "--json"], capture_output=True, text=True, timeout=60)
    assert out.returncode in (0, 1), out.stderr
    return list(json.loads(out.stdout)["zones"]["z"]["files"])


def test_a_new_version_of_a_255_byte_name_in_a_register_zone(make_pipe: Any) -> None:
    pipe = make_pipe(mode="register")
    rel = "r" * 255
    with pipe:
        write_raw(pipe, rel, b"one")
        pipe.drain(min_done=1)
        update(pipe, rel, b"the second")
        pipe.drain()
    assert rel_sums(pipe) == {rel: sha2(b"the second")}
    assert failures(pipe) == {}


def deep(pipe: Pipeline, levels: int) -> str:
    return "/".join(f"l{i}" for i in range(levels)) + "/leaf"


@pytest.mark.parametrize("mode", MODES)
def test_a_hundred_levels_deep(make_pipe: Any, mode: str, caplog: pytest.LogCaptureFixture) -> None:
    pipe = make_pipe(mode=mode)
    rel = deep(pipe, 100)
    with pipe:
        write_raw(pipe, rel, b"deep")
        write_raw(pipe, rel.rsplit("/", 2)[0] + "/side", b"side")
        run(pipe, {rel: b"deep", rel.rsplit("/", 2)[0] + "/side": b"side"}, set(), caplog)


def rel_of_length(pipe: Pipeline, total: int) -> str:
    """A relative path (components of <=200 bytes) whose iRODS path is `total` bytes long."""
    left = total - len(pipe.collection.encode()) - 1
    parts = []
    while left > 201:
        parts.append("p" * 200)
        left -= 201
    parts.append("f" * left)
    rel = "/".join(parts)
    assert len(names.target_for(pipe.collection, "x").collection.encode()) + 1 + len(rel) == total
    return rel


LIMIT = names.MAX_PATH_BYTES - len(".ingestd-12345678-old.part") - 1  # the longest path target_for takes


@pytest.mark.parametrize("mode", MODES)
def test_paths_at_and_over_the_length_limit(make_pipe: Any, mode: str, caplog: pytest.LogCaptureFixture) -> None:
    """Register zones hold paths up to target_for's limit. Put zones hold less: the physical path in the
    vault (here /var/lib/irods/Vault/home/... for /tempZone/home/..., 11 bytes longer) must fit MAX_NAME_LEN
    as well, with the temporary name's 24 bytes; the server says USER_STRLEN_TOOLONG (-306000) and nothing
    else, which now fails the file once with an explanation."""
    caplog.set_level(logging.INFO)
    pipe = make_pipe(mode=mode)
    at, over = rel_of_length(pipe, LIMIT), rel_of_length(pipe, LIMIT + 1)
    names.target_for(pipe.collection, at)
    with pytest.raises(names.BadName):
        names.target_for(pipe.collection, over)
    files = {at: b"at the limit", over: b"one byte over"}
    with pipe:
        for r, d in files.items():
            write_raw(pipe, r, d)
        if mode == "register":
            run(pipe, files, {over}, caplog, "too long")
        else:
            run(pipe, files, {over, at}, caplog, "")
    fails = failures(pipe)
    assert "iRODS path too long" in fails[over], fails
    if mode == "put":
        assert "USER_STRLEN_TOOLONG" in fails[at] and "vault" in fails[at], fails


# --- after-actions on odd and long names ------------------------------------------------------------------
@pytest.mark.parametrize("after", ["delete", "move"])
@pytest.mark.parametrize("versions", ["keep", "replace"])
def test_after_actions_on_odd_and_long_names(make_pipe: Any, after: str, versions: str, tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    """Names of 250 bytes (room for `.~1~`) and, with versions = "replace", of 255 bytes: deleted through
    their private names, moved to move_to twice (the second under a free numbered name)."""
    caplog.set_level(logging.INFO)
    long = 255 if versions == "replace" else 250
    done = tmp_path / "done"
    done.mkdir()
    zone: dict[str, Any] = {"after": after, "after_hold": "0s", "versions": versions}
    pipe = make_pipe(**zone, **({"move_to": str(done)} if after == "move" else {}))
    raws = [b"\xff", b"new\nline", b"l" * long, b"d\xfe/" + b"m" * long, b"sq'uote"]
    # the second move of a 255-byte name finds no room for `.~1~` in move_to: it stays, reported once
    stay = [r for r in raws if after == "move" and len(os.path.basename(r)) > 250]
    root = os.fsencode(pipe.root)
    with pipe:
        for round_ in (1, 2):  # the second round: the same names again (move_to already holds them)
            for raw in raws:
                write_raw(pipe, raw, b"round %d of %s" % (round_, raw))
            left = stay if round_ == 2 else []
            until(pipe, lambda left=left: [r for r in raws if os.path.lexists(os.path.join(root, r))] == left,  # type: ignore[misc]
                  timeout=60,
                  what=f"round {round_} ingested and {after}d")
        pipe.drain()
        time.sleep(1.5)  # rescans: a failed move is not tried again and again
        pipe.drain()
    for raw in stay:
        assert open(os.path.join(root, raw), "rb").read() == b"round 2 of " + raw
        said = [r.getMessage() for r in caplog.records if "after = move failed: File name too long" in r.getMessage()
                and f"/{names.display(os.fsdecode(raw))} (after = move failed: File name too long (" in r.getMessage()]
        assert len(said) == 1, said
    sums = checksums(pipe)
    for raw in raws:
        t = names.target_for(pipe.collection, os.fsdecode(raw)).path
        assert sums[t] == sha2(b"round 2 of " + raw)
        if versions == "keep":
            assert sums[t + ".~1~"] == sha2(b"round 1 of " + raw)
    assert failures(pipe) == {}
    if after == "move":
        dn = os.fsencode(done)
        for raw in raws:
            assert open(os.path.join(dn, raw), "rb").read() == b"round 1 of " + raw
            if raw not in stay:
                assert open(os.path.join(dn, raw + b".~1~"), "rb").read() == b"round 2 of " + raw


# a probe of the product on the real server, not of the stand-in's likeness: not run again in the second pass
pytestmark = pytest.mark.realonly
