"""Session 4 probe, names and paths (3): odd names in a delivery completed by a manifest that GNU
`sha256sum` wrote (coreutils escapes a name holding `\\`, a newline and, since 9.0, a carriage return with a
leading `\\` on its line); the plan, status and two workers on names that meet once mapped."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from irods.models import DataObject

from irods_ingestd import names as n_
from tests.expect import sha2
from tests.integration.test_adv_names import failures, outside_pytest_tmp, write_raw
from tests.integration.test_adv_names2 import rel_sums
from tests.pipeline_harness import names, pipelines, until

NAMES = ["plain", "a b", "back\\slash", "new\nline", "tab\there", "sq'uote", "pct%41", "caf\u00e9"]


@pytest.fixture
def make_pipe(redis_server: Any, redis_conn: Any, irods: Any) -> Any:
    with outside_pytest_tmp() as tmp, pipelines(tmp, redis_server.url, irods, complete_when="manifest",
                                                manifest="*.sha256") as make:
        yield make


def sha256sum(directory: Path, rels: list[str]) -> bytes:
    """The manifest as GNU sha256sum writes it, run in the delivery's directory."""
    assert shutil.which("sha256sum")
    return subprocess.run(["sha256sum", "--", *rels], cwd=directory, capture_output=True, check=True).stdout


def delivery(pipe: Any, d: str, rels: list[str]) -> None:
    for rel in rels:
        write_raw(pipe, f"{d}/{rel}", f"bytes of {rel!r}".encode())
    manifest = sha256sum(pipe.root / d, rels)
    write_raw(pipe, f"{d}/MANIFEST.sha256", manifest)


def test_a_delivery_of_odd_names_listed_by_sha256sum_completes(make_pipe: Any, tmp_path: Path) -> None:
    done = tmp_path / "done"
    pipe = make_pipe(after="move", move_to=str(done), after_hold="0s")
    with pipe:
        delivery(pipe, "d1", NAMES)
        until(pipe, lambda: (done / "d1").is_dir(), timeout=30, what="the delivery moved")
    assert names(pipe) == {names_mapped(f"d1/{n}") for n in NAMES} | {"d1/MANIFEST.sha256"}


def test_a_carriage_return_in_a_name_listed_by_sha256sum(make_pipe: Any, tmp_path: Path) -> None:
    done = tmp_path / "done"
    pipe = make_pipe(after="move", move_to=str(done), after_hold="0s")
    with pipe:
        delivery(pipe, "d2", ["plain", "cr\rret"])
        assert b"\\r" in (pipe.root / "d2/MANIFEST.sha256").read_bytes()
        until(pipe, lambda: (done / "d2").is_dir(), timeout=20, what="the delivery moved")


def names_mapped(rel: str) -> str:
    from irods_ingestd import names as n

    return n.display(rel)


def test_non_utf8_names_in_a_manifest(make_pipe: Any, tmp_path: Path) -> None:
    done = tmp_path / "done"
    pipe = make_pipe(after="move", move_to=str(done), after_hold="0s")
    raws = [b"lat\xe9n", b"ff\xff"]
    with pipe:
        for raw in raws:
            write_raw(pipe, b"d3/" + raw, b"bytes " + raw)
        out = subprocess.run([b"sha256sum", b"--", *raws], cwd=os.fsencode(pipe.root / "d3"), capture_output=True,
                             check=True).stdout
        write_raw(pipe, "d3/MANIFEST.sha256", out)
        until(pipe, lambda: (done / "d3").is_dir(), timeout=30, what="the delivery moved")
    assert names(pipe) == {names_mapped(os.fsdecode(b"d3/" + r)) for r in raws} | {"d3/MANIFEST.sha256"}


@pytest.fixture
def make_plain(redis_server: Any, redis_conn: Any, irods: Any) -> Any:
    with outside_pytest_tmp() as tmp, pipelines(tmp, redis_server.url, irods) as make:
        yield make


@pytest.mark.parametrize("text", ["\uffff", "\ufffe", "esc \x1b[0m", "bell \x07"])
def test_sidecar_text_the_xml_protocol_cannot_carry(make_plain: Any, text: str) -> None:
    """An AVU value iRODS stores but no GenQuery answer holding it can be parsed (like a name with U+FFFF):
    the file must fail with the sidecar named, or its later versions and the plan could never look at it."""
    import json as _json

    from tests.integration.test_adv_names import checksums, failures

    pipe = make_plain(sidecar="{name}.metadata.json")
    with pipe:
        write_raw(pipe, "f.dat.metadata.json", _json.dumps({"note": text}).encode())
        write_raw(pipe, "f.dat", b"data")
        until(pipe, lambda: "f.dat" in failures(pipe), timeout=30, what="f.dat to fail")
        pipe.drain()
    assert checksums(pipe) == {}  # nothing written (no temporary copy with the AVU); every GenQuery parses
    fails = failures(pipe)
    assert "metadata.json" in fails["f.dat"] and "cannot carry" in fails["f.dat"], fails


# --- the dry run says what the worker does with such names --------------------------------------------------
def test_plan_on_names_the_worker_refuses(make_plain: Any, caplog: pytest.LogCaptureFixture) -> None:
    import json
    import subprocess
    import sys

    pipe = make_plain()
    with pipe:
        write_raw(pipe, b"a\xff", b"odd")
        write_raw(pipe, "b/inner", b"inner")
        write_raw(pipe, "nc\uffff", b"nonchar")
        write_raw(pipe, "c", b"file c")
        pipe.drain(min_done=4)
    os.rename(pipe.root / "b", pipe.root / "b-dir")
    os.rename(pipe.root / "c", pipe.root / "c-file")
    write_raw(pipe, "c/inner", b"in c")
    write_raw(pipe, "b", b"file b")
    write_raw(pipe, "a%FF", b"literal")
    out = subprocess.run([sys.executable, "-m", "irods_ingestd", "--log-target", "stderr", "-c",
                          str(pipe.config_path), "plan", "--json"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1, out.stderr
    listed = json.loads(out.stdout)["zones"]["z"]["files"]
    new = [f for f in listed if f["path"] == "a%FF" and f["size"] == len(b"literal")]  # two entries say a%FF
    assert len(new) == 1 and new[0]["irods"] == "conflict" and new[0]["would_fail"], new
    assert "(landing name b'a\\xff' before mapping)" in new[0]["reason"], new
    b = [f for f in listed if f["path"] == "b"]
    assert b[0]["irods"] == "conflict" and b[0]["would_fail"] and "is a collection" in b[0]["reason"], b
    in_a = [f for f in listed if f["path"] == "c/inner"]
    assert in_a[0]["irods"] == "conflict" and "is a data object" in in_a[0]["reason"], in_a
    with pipe:  # and the worker does what the plan said
        pipe.drain()
    fails = failures(pipe)
    assert set(fails) == {"a%FF", "b", "c/inner"}, fails


def test_status_names_each_refused_file(make_plain: Any) -> None:
    import json
    import subprocess
    import sys

    pipe = make_plain(mode="register")
    refused = [b"bad\xff", b"tab\there", b"d\xfe/x", b"nc-\xef\xbf\xbf"]
    with pipe:
        for raw in refused:
            write_raw(pipe, raw, b"data")
        write_raw(pipe, "fine", b"fine")
        pipe.drain(min_done=1)
    out = subprocess.run([sys.executable, "-m", "irods_ingestd", "--log-target", "stderr", "-c",
                          str(pipe.config_path), "status", "--json"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1, out.stderr
    z = json.loads(out.stdout)["zones"]["z"]
    shown = sorted(f["path"] for f in z["failed_files"])
    assert shown == sorted(n_.display(os.fsdecode(r)) for r in refused), shown
    assert all("register mode cannot register" in f["reason"] for f in z["failed_files"])
    human = subprocess.run([sys.executable, "-m", "irods_ingestd", "--log-target", "stderr", "-c",
                            str(pipe.config_path), "status"], capture_output=True, text=True, timeout=60)
    for s in shown:
        assert s in human.stdout, human.stdout


def test_two_names_mapped_to_one_in_two_workers_at_once(make_plain: Any) -> None:
    """`a\\xff` and `a%FF` share their target and so their temporary name, but not their lock (a lock is
    per landing path): two workers at once must still leave one verified object and one conflict."""
    import subprocess
    import sys

    from rq import Queue

    pipe = make_plain()
    big = 64 << 20
    with pipe:
        write_raw(pipe, b"a\xff", b"1" * big)
        time.sleep(1.0)  # queued as its own job
        write_raw(pipe, b"a%FF", b"2" * big)
        time.sleep(1.5)
        assert len(Queue(pipe.cfg.queue.name, connection=pipe.r)) == 2
        procs = [subprocess.Popen([sys.executable, "-m", "irods_ingestd", "--log-target", "stderr", "-c",
                                   str(pipe.config_path), "worker", "--burst", "--name", f"race-{i}-{os.getpid()}"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for i in (1, 2)]
        errs = [p.communicate(timeout=240)[1].decode(errors="replace") for p in procs]
        pipe.drain(timeout=60)
    sums = rel_sums(pipe)
    assert list(sums) == ["a%FF"], (sums, errs)  # no temporary copy left
    with pipe.irods.session() as s:
        original = {m.name: m.value for m in s.metadata.get(DataObject, f"{pipe.collection}/a%FF")}.get(
            "ingestd::original_name")
    # the object is the file its AVUs say it is
    assert sums["a%FF"] == (sha2(b"1" * big) if original == b"a\xff".hex() else sha2(b"2" * big)), original
    fails = failures(pipe)
    assert len(fails) == 1, fails  # the other one failed, once; its reason is "conflict: ..." or, when both
    # created the shared temporary name at once, CATALOG_ALREADY_HAS_ITEM_BY_THAT_NAME (seen once in three)
    assert list(fails) == [os.fsdecode(b"a%FF" if original else b"a\xff")], (fails, errs)


# a probe of the product on the real server, not of the stand-in's likeness: not run again in the second pass
pytestmark = pytest.mark.realonly
