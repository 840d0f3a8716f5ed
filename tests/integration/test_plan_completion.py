"""`irods-ingestd plan` in a zone whose directories complete by a marker: which files wait for their marker,
which are held, what happens to the marker itself; then checked against what the pipeline does."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from irods_ingestd.completion import units
from tests.integration.test_plan import cli, write
from tests.landing import server_readable
from tests.pipeline_harness import Pipeline


def test_plan_says_which_files_wait_for_their_directory(tmp_path: Path, redis_server: Any, redis_conn: Any,
                                                        irods: Any) -> None:
    p = Pipeline(tmp_path, redis_server.url, irods, root=server_readable(tmp_path / "landing"),
                 zone={"complete_when": "marker", "marker": "RTAComplete.txt"})
    root = p.root
    assert root is not None
    try:
        write(root / "run1" / "lane1" / "a.txt", "a")
        write(root / "run1" / "RTAComplete.txt", "done")
        write(root / "run2" / "b.txt", "b")  # no marker yet
        write(root / "run3" / "c.txt", "c")  # completed before (registered by a daemon)
        write(root / "RTAComplete.txt", "root")  # in the zone's root: not honoured
        units.register(p.r, p.cfg.redis.prefix, p.name, "run3", units.UnitInfo("marker", "run3/RTAComplete.txt"))
        out = cli(p.config_path, "--json")
        plan = json.loads(out.stdout)
        z = plan["zones"][p.name]
        files = {f["path"]: f for f in z["files"]}
        assert files["run1/lane1/a.txt"]["action"] == "ingest"
        assert "waits for run1/ to be complete (marker run1/RTAComplete.txt to settle)" in \
            files["run1/lane1/a.txt"]["reason"]
        assert files["run1/RTAComplete.txt"]["action"] == "ingest"
        assert "the marker of run1/: ingested last" in files["run1/RTAComplete.txt"]["reason"]
        assert files["run2/b.txt"]["action"] == "held"
        assert "held until its directory is complete (complete_when = \"marker\": no file matching " \
               "'RTAComplete.txt' in it or above)" in files["run2/b.txt"]["reason"]
        assert files["run3/c.txt"]["action"] == "ingest" and "waits" not in files["run3/c.txt"]["reason"]
        assert files["RTAComplete.txt"]["action"] == "held" and "not honoured" in files["RTAComplete.txt"]["reason"]
        assert z["counts"]["held"] == 2 and z["notes"] == [] and out.returncode == 0, out.stdout
        human = cli(p.config_path)
        assert "zone z: 3 to ingest, 0 updates (6 bytes to send), 0 present, 0 conflicts, 0 settling, 2 held" \
            in human.stdout

        # the pipeline: run1 (its marker last) and run3 ingested, run2 and the root's marker held
        with p:
            deadline = time.monotonic() + 40
            want = {"run1/lane1/a.txt", "run1/RTAComplete.txt", "run3/c.txt"}
            while not want <= {k[len(p.collection) + 1:] for k in p.objects()}:
                assert time.monotonic() < deadline, sorted(p.objects())
                p.work()
                time.sleep(0.3)
            time.sleep(1.0)
            p.work()
        assert {k[len(p.collection) + 1:] for k in p.objects()} == want
    finally:
        p.__exit__(None, None, None)
        p.cleanup()
