"""`irods-ingestd plan` judges an object found under a file's name with the worker's own decision
(ingest/judge.py), on the real server: where the two once differed (a register zone with provenance =
"collection", whose objects carry no AVUs and are known by their physical path), the plan says what the
worker then does."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from irods.models import DataObject

from tests.integration.test_plan import cli
from tests.landing import remove_collections
from tests.pipeline_harness import names, pipelines, until


def test_a_collection_provenance_register_zones_own_object_is_an_update_in_plan_and_worker(
        tmp_path: Path, redis_server: Any, redis_conn: Any, irods: Any) -> None:
    with pipelines(tmp_path, redis_server.url, irods, mode="register", provenance="collection") as make:
        pipe = make()
        remove_collections(irods, pipe.collection)  # what an interrupted earlier run left (same name each run)
        f = pipe.root / "a.txt"
        with pipe:
            f.write_bytes(b"version 1")
            until(pipe, lambda: "a.txt" in names(pipe), what="a.txt registered")
        f.write_bytes(b"version 2, longer")
        old = time.time() - 3600
        os.utime(f, (old, old))
        out = cli(pipe.config_path, "--json")
        files = {x["path"]: x for x in json.loads(out.stdout)["zones"]["z"]["files"]}
        assert files["a.txt"]["action"] == "update", files["a.txt"]
        assert "the registration of" in files["a.txt"]["reason"], files["a.txt"]
        with pipe:
            until(pipe, lambda: pipe.objects().get(f"{pipe.collection}/a.txt", {DataObject.size: 0})[DataObject.size]
                  == len(b"version 2, longer"), what="a.txt registered again")
        assert dict(pipe.ledger.failures("z")) == {}
