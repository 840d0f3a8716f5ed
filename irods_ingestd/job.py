"""The job contract: what the daemon hands a worker, as a small versioned record.

A job carries one batch of files of one zone. RQ pickles the record as a plain dict (never a class),
so a worker of another version can read it and refuse it clearly when the version is unknown:

    {
      "v": 1,                               # JOB_VERSION
      "id": "b-<zone>-<hash>",              # the batch id, also RQ's job id
      "queued_at": 1764201600.0,            # unix seconds
      "zone": {"name", "root", "collection", "mode", "resource", "after", "move_to",
               "follow_symlinks",         # optional, default false
               "versions",                # optional, default "keep" (see ingest: a new version of a file)
               "after_hold",              # optional, default 0: seconds between verification and delete/move
               "metadata",                # optional, default []: metadata extractors besides the provenance
               "provenance",              # optional, default "object": provenance AVUs a file, or "collection"
               "completion", "avus", "access"},  # optional: the zone's parts (zoneparts/), as
                                          # plain records (records.py); missing = the part's defaults
      "files": [[rel, size, mtime_ns], ...] # rel: path relative to root, str (surrogateescape for
                                            #      bytes that are not UTF-8), "/"-separated; optional
                                            # 4th: the sum a manifest lists ("sha256:<hex>", "md5:<hex>",
                                            # "" none), 5th: the completed directory (completion/)
    }

The worker function is `irods_ingestd.tasks.ingest_batch(record)`.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field

from . import records
from .config import ZoneConfig
from .zoneparts.access import Access
from .zoneparts.avus import Avus
from .zoneparts.completion import Completion
from .zoneparts.notify import Notify

JOB_VERSION = 1
TASK_FUNC = "irods_ingestd.tasks.ingest_batch"


@dataclass(frozen=True, slots=True)
class FileItem:
    rel: str
    size: int
    mtime_ns: int
    expect: str = ""  # "sha256:<hex>" / "md5:<hex>": the sum a manifest lists for it (completion/)
    unit: str | None = None  # the completed directory it belongs to (complete_when = marker/manifest)

    def to_row(self) -> list:
        """[rel, size, mtime_ns] plus, when set, expect and unit (only marker/manifest zones make the longer
        rows: upgrade the workers before configuring one)."""
        row: list = [self.rel, self.size, self.mtime_ns]
        if self.expect or self.unit is not None:
            row.append(self.expect)
        if self.unit is not None:
            row.append(self.unit)
        return row

    @classmethod
    def from_row(cls, row: list) -> FileItem:
        rel, size, mtime = row[:3]
        return cls(rel, int(size), int(mtime), str(row[3]) if len(row) > 3 else "",
                   str(row[4]) if len(row) > 4 else None)


@dataclass(frozen=True, slots=True)
class ZoneSpec:
    name: str
    root: str
    collection: str
    mode: str = "put"
    resource: str = ""
    after: str = "keep"
    move_to: str | None = None
    follow_symlinks: bool = False
    versions: str = "keep"  # keep | replace | conflict: what a different file under an ingested name does
    after_hold: float = 0.0  # seconds a verified file stays before delete/move
    metadata: tuple[str, ...] = ()  # metadata extractors besides the provenance (irods_ingestd.registry)
    provenance: str = "object"  # object | collection: where the provenance AVUs go
    completion: Completion = field(default_factory=Completion)
    avus: Avus = field(default_factory=Avus)
    access: Access = field(default_factory=Access)
    notify: Notify = field(default_factory=Notify)

    @classmethod
    def from_config(cls, z: ZoneConfig) -> ZoneSpec:
        return cls(name=z.name, root=str(z.path), collection=z.collection, mode=z.mode,
                   resource=z.resource, after=z.after, move_to=str(z.move_to) if z.move_to else None,
                   follow_symlinks=z.symlinks == "follow", versions=z.versions,
                   after_hold=z.after_hold, metadata=z.metadata, provenance=z.provenance,
                   completion=z.completion, avus=z.avus, access=z.access, notify=z.notify)

    def to_record(self) -> dict:
        return {"name": self.name, "root": self.root, "collection": self.collection, "mode": self.mode,
                "resource": self.resource, "after": self.after, "move_to": self.move_to,
                "follow_symlinks": self.follow_symlinks, "versions": self.versions, "after_hold": self.after_hold,
                "metadata": list(self.metadata), "provenance": self.provenance,
                "completion": records.as_record(self.completion),
                "avus": records.as_record(self.avus), "access": records.as_record(self.access)}
        # not notify: a webhook URL may hold a token; a worker takes it from its own config (notify.of)

    @classmethod
    def from_record(cls, z: dict) -> ZoneSpec:
        return cls(name=z["name"], root=z["root"], collection=z["collection"], mode=z["mode"],
                   resource=z.get("resource", ""), after=z.get("after", "keep"), move_to=z.get("move_to"),
                   follow_symlinks=bool(z.get("follow_symlinks", False)), versions=z.get("versions", "keep"),
                   after_hold=float(z.get("after_hold", 0.0)), metadata=tuple(z.get("metadata", ())),
                   provenance=z.get("provenance", "object"),
                   completion=records.from_record(Completion, z.get("completion")),
                   avus=records.from_record(Avus, z.get("avus")),
                   access=records.from_record(Access, z.get("access")))


@dataclass(frozen=True, slots=True)
class Batch:
    zone: ZoneSpec
    files: tuple[FileItem, ...]
    queued_at: float = field(default_factory=time.time)

    @property
    def id(self) -> str:
        h = hashlib.blake2b(digest_size=12)
        h.update(self.zone.name.encode())
        for f in self.files:
            h.update(b"\0" + f.rel.encode("utf-8", "surrogateescape") + b"\0%d\0%d" % (f.size, f.mtime_ns))
        return f"b-{h.hexdigest()}"

    @property
    def bytes(self) -> int:
        return sum(f.size for f in self.files)

    def to_record(self) -> dict:
        z = self.zone
        return {
            "v": JOB_VERSION,
            "id": self.id,
            "queued_at": self.queued_at,
            "zone": z.to_record(),
            "files": [f.to_row() for f in self.files],
        }

    @classmethod
    def from_record(cls, rec: dict) -> Batch:
        if rec.get("v") != JOB_VERSION:
            raise ValueError(f"job record version {rec.get('v')!r} is not {JOB_VERSION}: upgrade this worker")
        return cls(
            zone=ZoneSpec.from_record(rec["zone"]),
            files=tuple(FileItem.from_row(row) for row in rec["files"]),
            queued_at=float(rec.get("queued_at", 0.0)),
        )
