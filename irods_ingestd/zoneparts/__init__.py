"""The parts of a zone's config that belong to one feature each, validated by their own module.

Each part module has a frozen flat dataclass (its settings, with defaults that change nothing), `KEYS`
(the zone-table keys it reads) and `check(c, where, raw) -> the dataclass`, which reads those keys from the
zone's TOML table and appends every problem to the checker, naming the zone and the field. The zone's
config (`ZoneConfig.<part>`) holds the dataclass, and so does the job's `ZoneSpec` where the worker needs it
(sent as a plain record, :mod:`irods_ingestd.records`).

Adding a feature's settings is a module here and a line in `PARTS`.
"""

from __future__ import annotations

from types import ModuleType

from . import access, avus, completion, notify

# ZoneConfig field name → the module that validates it
PARTS: dict[str, ModuleType] = {
    "completion": completion,  # complete_when, marker, manifest (issue 14.1)
    "avus": avus,              # provenance set, path regex, sidecar AVUs (issue 14.2)
    "access": access,          # ACLs, inheritance, replicas before disposal (issue 14.3, 14.4)
    "notify": notify,          # webhooks (issue 15.2)
}

KEYS: frozenset[str] = frozenset().union(*(m.KEYS for m in PARTS.values()))
