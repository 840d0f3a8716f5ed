"""A directory sidecar's AVUs on its collection when the collection is removed under a running worker: the
worker makes the collection again and gives it its AVUs again (its once-per-collection memory is dropped with
its known collections)."""

from __future__ import annotations

import json

from irods.models import Collection, CollectionMeta

from irods_ingestd.zoneparts.avus import Avus
from tests.integration.test_ingest import Env, env  # noqa: F401 - the fixture


def test_a_removed_collection_gets_its_sidecar_avus_again(env: Env) -> None:  # noqa: F811
    ctx = env.ctx(avus=Avus(dir_sidecar="metadata.json"))
    (env.root / "run").mkdir()
    (env.root / "run/metadata.json").write_text(json.dumps({"project": "P1"}))
    assert env.run(ctx, [env.write("run/a.dat", b"a")])["ingested"] == 1
    with env.session() as s:
        s.collections.remove(f"{env.coll}/run", recurse=True, force=True)
    assert env.run(ctx, [env.write("run/b.dat", b"b")])["ingested"] == 1  # the same worker
    with env.session() as s:
        q = s.query(CollectionMeta.name, CollectionMeta.value).filter(Collection.name == f"{env.coll}/run")
        assert [(r[CollectionMeta.name], r[CollectionMeta.value]) for r in q] == [("project", "P1")]
