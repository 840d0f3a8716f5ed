"""Local relative paths → iRODS logical paths.

A zone's file ``<root>/<rel>`` becomes the data object ``<collection>/<rel>``. ``rel`` is the job
record's relative path: ``/``-separated, a ``str`` in which bytes that are not UTF-8 appear as lone
surrogates (``surrogateescape``).

Rules:

* Anything that would escape the collection is refused (:class:`BadName`): an empty path, an absolute
  path, empty components (``a//b``, a trailing ``/``), ``.`` and ``..``, NUL.
* A component that iRODS cannot hold as it is gets a deterministic, reversible mapping: a name that
  is not valid UTF-8 or that holds control characters (C0 and DEL; the XML protocol cannot carry most
  of them) or U+FFFE/U+FFFF (valid UTF-8, but not XML characters) has each such byte written as ``%XX``
  (upper-case hex; U+FFFF is ``%EF%BF%BF``), and, in such a name only, ``%`` itself
  as ``%25``. Every other name is kept exactly. :func:`unmap_component` reverses the mapping of a
  mapped component; the data object also carries the original bytes in the AVU
  ``ingestd::original_name`` (hex of the whole relative path), see :func:`original_name_value`.

A mapped name can equal a real name that happens to be spelt with ``%XX`` (``a\\xff`` → ``a%FF``, and a
file literally called ``a%FF``). The ingest never overwrites an object that another file made: the
AVUs (``ingestd::source_path`` plus ``ingestd::original_name``) tell them apart and the second one is
reported as a conflict.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

# iRODS' MAX_NAME_LEN (logical paths are limited to 1088 bytes, including the terminating NUL).
MAX_PATH_BYTES = 1087

# C0 and DEL, bytes that are not UTF-8 (lone surrogate escapes), and U+FFFE/U+FFFF: valid UTF-8 but not XML
# characters (the server stores such a name, then no client can parse a GenQuery answer that holds it).
_NEEDS_MAPPING = re.compile(r"[\x00-\x1f\x7f\udc80-\udcff\ufffe\uffff]")
_ESCAPE = re.compile(r"%([0-9A-F]{2})")

# A copy is written to `.<name>.ingestd-<tag>.part` and an update sets the old object aside as
# `.<name>.ingestd-<tag>-old.part`, where <tag> is 8 hex digits of a hash of the object's path: no file
# ingested under its own name can take one of these names by accident (a landing file called
# `.x.ingestd.part` is just a file), and a leftover found under one is this object's.
PART_SUFFIX = ".part"
OLD_SUFFIX = "-old.part"
_TAG_LEN = 8
# Landing names irods-ingestd reserves whatever a zone's patterns say: never ingested (fnmatch patterns).
RESERVED_LANDING = (
    ".*.ingestd-????????.part", ".*.ingestd-????????-old.part", ".ingestd-*.part",  # its iRODS names
    ".*.ingestd-del.??????", ".*.ingestd-move.??????", ".ingestd-del.??????", ".ingestd-move.??????",  # after.py
)


class BadName(ValueError):
    """A relative path that cannot become an iRODS path inside the zone's collection."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where a local file goes: the data object, its collection and name, and whether it was mapped."""

    path: str
    collection: str
    name: str
    mapped: bool
    origin: str = ""  # a mapped path's original relative path (it keeps its temporary names apart)

    @property
    def _key(self) -> str:
        """What the temporary names' tag is made of: the path, and for a mapped one its original bytes too, so
        `a\xff` and a literal `a%FF` (one target) never write one temporary object (their locks, per landing
        path, do not keep them apart: two workers at once wrote the same .part, and the object kept pointed at
        a vault file the other had removed, without a checksum)."""
        return self.path if not self.origin else f"{self.path}\0{original_name_value(self.origin)}"

    @property
    def part_name(self) -> str:
        """The temporary object a copy is written to before it is verified."""
        return part_name(self.name, self._key)

    @property
    def part_path(self) -> str:
        return f"{self.collection}/{self.part_name}"

    @property
    def old_name(self) -> str:
        return old_name(self.name, self._key)

    @property
    def old_path(self) -> str:
        """Where the previous version is set aside while an update is swapped in (versions = replace)."""
        return f"{self.collection}/{self.old_name}"


# Vaults on POSIX file systems hold each name component in at most 255 bytes, temporary names included.
MAX_COMPONENT_BYTES = 255


def _aside(name: str, path: str, suffix: str) -> str:
    """`.name.ingestd-<tag><suffix>`, or for a name too long to take it, a deterministic hashed stand-in."""
    raw = path.encode("utf-8", "surrogateescape")
    tag = hashlib.blake2b(raw, digest_size=_TAG_LEN // 2).hexdigest()
    aside = f".{name}.ingestd-{tag}{suffix}"
    if len(aside.encode("utf-8", "surrogateescape")) <= MAX_COMPONENT_BYTES:
        return aside
    return f".ingestd-{hashlib.blake2b(raw, digest_size=12).hexdigest()}{suffix}"


def part_name(name: str, path: str) -> str:
    return _aside(name, path, PART_SUFFIX)


def old_name(name: str, path: str) -> str:
    return _aside(name, path, OLD_SUFFIX)


def needs_mapping(component: str) -> bool:
    return _NEEDS_MAPPING.search(component) is not None


def _component_bytes(component: str) -> bytes:
    try:
        return component.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError as e:
        raise BadName(f"not a file name (surrogates that are not escaped bytes): {component!r}") from e


REGISTER_UNSAFE = ("register mode cannot register this file: its path holds bytes that are not UTF-8, control "
                   "characters or U+FFFE/U+FFFF, which the iRODS protocol cannot carry as a physical path "
                   "(rename it, or ingest it through a put zone)")


def register_refusal(realpath: str) -> str | None:
    """Why register mode cannot register the landing file at `realpath` as it is, or None."""
    if needs_mapping(realpath):
        return REGISTER_UNSAFE
    n = len(realpath.encode("utf-8"))
    if n > MAX_PATH_BYTES:
        return (f"register mode cannot register this file: its physical path is {n} bytes, longer than the "
                f"{MAX_PATH_BYTES} iRODS takes (MAX_NAME_LEN; the server would look at a truncated path)")
    return None


def map_component(component: str) -> str:
    """One path component as iRODS will store it (see the module documentation)."""
    if not needs_mapping(component):
        return component
    out: list[str] = []
    for ch in component:
        o = ord(ch)
        if 0xDC80 <= o <= 0xDCFF:
            out.append(f"%{o - 0xDC00:02X}")
        elif o < 0x20 or o == 0x7F:
            out.append(f"%{o:02X}")
        elif o in (0xFFFE, 0xFFFF):
            out.append("".join(f"%{b:02X}" for b in ch.encode("utf-8")))
        elif ch == "%":
            out.append("%25")
        else:
            out.append(ch)
    return "".join(out)


def unmap_component(mapped: str) -> bytes:
    """The original bytes of a component that :func:`map_component` mapped."""
    out = bytearray()
    i = 0
    while i < len(mapped):
        m = _ESCAPE.match(mapped, i)
        if m:
            out.append(int(m.group(1), 16))
            i = m.end()
        else:
            out += mapped[i].encode("utf-8")
            i += 1
    return bytes(out)


def check_rel(rel: str) -> list[str]:
    """The components of a relative path, or BadName if it would leave the collection."""
    if not rel:
        raise BadName("empty relative path")
    if rel.startswith("/"):
        raise BadName(f"absolute path, not relative: {rel!r}")
    if "\0" in rel:
        raise BadName(f"NUL in path: {rel!r}")
    parts = rel.split("/")
    for p in parts:
        if p == "":
            raise BadName(f"empty path component: {rel!r}")
        if p in (".", ".."):
            raise BadName(f"{p!r} component: {rel!r}")
        _component_bytes(p)
    return parts


def rel_bytes(rel: str) -> bytes:
    return rel.encode("utf-8", "surrogateescape")


def display(rel: str) -> str:
    """A relative path as valid UTF-8 text (mapped components), for logs and AVU values."""
    return "/".join(map_component(p) for p in rel.split("/"))


def target_for(collection: str, rel: str) -> Target:
    """The iRODS data object for a zone's relative path."""
    if not collection.startswith("/") or collection.endswith("/") and collection != "/":
        raise BadName(f"collection must be an absolute iRODS path without a trailing /: {collection!r}")
    parts = check_rel(rel)
    mapped_parts = [map_component(p) for p in parts]
    mapped = mapped_parts != parts
    path = collection.rstrip("/") + "/" + "/".join(mapped_parts)
    if len(path.encode("utf-8")) + len(".ingestd-12345678-old.part") + 1 > MAX_PATH_BYTES:
        raise BadName(f"iRODS path too long ({len(path.encode())} bytes, limit {MAX_PATH_BYTES} "
                      f"with the temporary suffix): {display(rel)}")
    for p in mapped_parts:
        if len(p.encode("utf-8")) > MAX_COMPONENT_BYTES:
            raise BadName(f"a name of {len(p.encode())} bytes once mapped for iRODS (limit {MAX_COMPONENT_BYTES}): "
                          f"{display(rel)}")
    coll, _, name = path.rpartition("/")
    return Target(path=path, collection=coll, name=name, mapped=mapped, origin=rel if mapped else "")


def original_name_value(rel: str) -> str:
    """The AVU value that keeps a mapped path's original bytes: lower-case hex of the relative path."""
    return rel_bytes(rel).hex()


def rel_from_original_name(value: str) -> str:
    """Inverse of :func:`original_name_value`: the relative path as a surrogateescape str."""
    return bytes.fromhex(value).decode("utf-8", "surrogateescape")
