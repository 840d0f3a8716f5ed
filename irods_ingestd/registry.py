"""Named hooks a zone's config can choose, each a module with one fixed function (borgmatic's idea).

* ``metadata = [...]``: metadata extractors, ``avus(zone, item, target, host) -> list[iRODSMeta]``: the AVUs
  a file's object gets, all in one atomic call with the provenance.
* ``after = "..."``: after-actions, ``run(zone, item, path) -> None``, applied to a verified landing file (see
  :mod:`irods_ingestd.ingest.after` for the checks every action gets first).

Adding one is a module and a line here. This module imports nothing, so the config can validate names.
"""

from __future__ import annotations

import importlib
from types import ModuleType

EXTRACTORS: dict[str, str] = {
    "provenance": "irods_ingestd.ingest.extractors.provenance",
    "owner": "irods_ingestd.ingest.extractors.owner",
    "path": "irods_ingestd.ingest.extractors.path",  # switched on by a zone's path_regex
    "sidecar": "irods_ingestd.ingest.extractors.sidecar",  # switched on by a zone's sidecar
}
AFTER_ACTIONS: dict[str, str] = {
    "delete": "irods_ingestd.ingest.actions.delete",
    "move": "irods_ingestd.ingest.actions.move",
}


def load(table: dict[str, str], name: str) -> ModuleType:
    return importlib.import_module(table[name])
