"""Declarative metadata, the part without iRODS: what iRODS accepts in an AVU, the JSON sidecar mapping,
where a file's sidecars are, and which landing names are sidecars (not ingested by default).

A sidecar is a JSON object, each member one attribute (its name used as written):

    {"instrument": "NovaSeq",                       # a string        → one AVU
     "reads": 1200000, "paired": true,              # number, bool    → one AVU, the JSON text: "1200000", "true"
     "organism": ["human", "mouse"],                # a list          → one AVU per element
     "coverage": {"value": 30, "units": "x"},       # value and units → one AVU with units
     "lanes": [{"value": 1, "units": "lane"}, 2]}   # lists may hold value/units objects too

Anything else fails the file with the sidecar and the problem named: not UTF-8 JSON, not an object, a null,
a nested list or object, other keys than value/units, an attribute twice, an empty attribute or value, a NUL,
a text longer than iRODS keeps, an attribute that is irods-ingestd's own (``ingestd::zone`` ...), more than
MAX_SIDECAR_AVUS AVUs.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
from typing import Any

# What the iRODS catalog keeps (r_meta_main; measured on iRODS 5.0.2 with PostgreSQL: longer ones fail with
# SYS_LIBRARY_ERROR; a value of 2700 two-byte characters is stored but a GenQuery cannot read it back, so the
# limits are in UTF-8 bytes). An empty attribute or value is refused (SYS_INVALID_INPUT_PARAM); a NUL cuts
# the text short.
MAX_ATTR_BYTES = 2700
MAX_VALUE_BYTES = 2700
MAX_UNITS_BYTES = 250
MAX_SIDECAR_BYTES = 1 << 20  # a sidecar larger than this is refused (a mistake, not metadata)
# AVUs a sidecar may give at most: they go in one atomic call, whose time grows with them (measured here on
# iRODS 5.0.2: 1,000 in 1.6 s, 10,000 in 25 s; 60,000, which fit in 1 MiB, outlasted the client's 120 s and
# were retried as an outage, never failed)
MAX_SIDECAR_AVUS = 5000

# The attributes irods-ingestd writes itself (metadata.py, the extractors, zone_provenance.py): a user's AVU
# may not be one of them, or irods-ingestd would misjudge whose object it is.
OWN_PREFIX = "ingestd::"
OWN_NAMES = frozenset(OWN_PREFIX + n for n in (
    "source_host", "source_path", "size", "mtime", "ingest_time", "zone", "version", "original_name",
    "superseded", "owner", "group", "provenance", "source_root",
    "completed", "completed_by", "completed_files", "completed_bytes"))

Triple = tuple[str, str, str]  # attribute, value, units ("" = none)


# Characters XML 1.0 does not allow (tab, newline and carriage return are allowed); NUL is refused above.
_NOT_XML = re.compile("[\x01-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def quoted(text: str, keep: int = 60) -> str:
    """A sidecar's text as a reason quotes it: whole when short, else its start and its length (an attribute
    may be as long as the sidecar: its failure reason and log line should not be)."""
    if len(text) <= keep:
        return repr(text)
    return f"{text[:keep]!r}... ({len(text)} characters)"


class SidecarError(ValueError):
    """A sidecar that cannot be taken; the text says what is wrong with it."""


def avu_problem(attr: str, value: str, units: str = "") -> str | None:
    """Why iRODS would refuse (or mangle) this AVU, or None."""
    for what, text, limit in (("attribute", attr, MAX_ATTR_BYTES), ("value", value, MAX_VALUE_BYTES),
                              ("units", units, MAX_UNITS_BYTES)):
        if what != "units" and not text:
            return f"empty {what}" + (f" of {quoted(attr)}" if what == "value" else "")
        if "\0" in text:
            return f"{what} of {quoted(attr)} holds a NUL character"
        bad = _NOT_XML.search(text)
        if bad:  # stored by the server, but then no GenQuery answer holding it can be parsed (the object's
            # metadata could never be read again: not by a later version's judgement, the plan or imeta)
            return (f"{what} of {quoted(attr)} holds U+{ord(bad.group()):04X}, which the iRODS protocol (XML) "
                    "cannot carry")
        try:
            n = len(text.encode("utf-8"))
        except UnicodeEncodeError:
            return f"{what} of {quoted(attr)} is not valid UTF-8 text"
        if n > limit:
            return f"{what} of {quoted(attr)} is {n} bytes long (iRODS keeps at most {limit})"
    if attr in OWN_NAMES:
        return f"attribute {quoted(attr)} is irods-ingestd's own"
    return None


def _scalar(attr: str, v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):  # strings, and numbers kept as their JSON text (parse_int/parse_float=str)
        return v
    if v is None:
        raise SidecarError(f"{quoted(attr)}: null is not a value")
    raise SidecarError(f"{quoted(attr)}: a list inside a list is not a value")


def _one(attr: str, v: Any) -> Triple:
    if isinstance(v, _Object):
        extra = set(v) - {"value", "units"}
        if extra or "value" not in v:
            got = ", ".join(sorted(v)) or "nothing"
            raise SidecarError(f"{quoted(attr)}: an object needs \"value\" and may have \"units\", nothing else "
                               f"(got {got if len(got) <= 120 else got[:120] + '...'})")
        units = v.get("units", "")
        if not isinstance(units, str) or isinstance(v["value"], _Object | list):
            raise SidecarError(f"{quoted(attr)}: \"units\" must be a string and \"value\" a string, number or boolean")
        return attr, _scalar(attr, v["value"]), units
    return attr, _scalar(attr, v), ""


class _Object(dict[str, Any]):
    """A JSON object as parsed here (marks objects apart from strings that were numbers)."""


def _pairs(pairs: list[tuple[str, Any]]) -> _Object:
    out = _Object()
    for k, v in pairs:
        if k in out:
            raise SidecarError(f"{quoted(k)} appears twice (use a list for several values)")
        out[k] = v
    return out


def _constant(name: str) -> Any:
    raise SidecarError(f"{name} is not a value")


def parse(data: bytes) -> list[Triple]:
    """A sidecar's bytes → its AVUs, checked against what iRODS accepts (raises SidecarError)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise SidecarError(f"not UTF-8 text (byte {e.start})") from None
    try:
        doc = json.loads(text, object_pairs_hook=_pairs, parse_int=str, parse_float=str,
                         parse_constant=_constant)
    except json.JSONDecodeError as e:
        raise SidecarError(f"not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    except RecursionError:  # [[[[...]]]] thousands deep: a RecursionError was taken for iRODS being away
        raise SidecarError("nested too deeply (a value is a text, number or boolean, in a list at most)") from None
    if not isinstance(doc, _Object):
        raise SidecarError("expected a JSON object of \"attribute\": value members")
    out: list[Triple] = []
    for attr, v in doc.items():
        out += [_one(attr, x) for x in v] if isinstance(v, list) else [_one(attr, v)]
        if len(out) > MAX_SIDECAR_AVUS:
            raise SidecarError(f"gives more than {MAX_SIDECAR_AVUS} AVUs (they go in one call, which would take "
                               "minutes)")
    for t in out:
        if (why := avu_problem(*t)) is not None:
            raise SidecarError(why)
    return out


def read(path: str, follow_symlinks: bool) -> tuple[list[Triple], os.stat_result] | None:
    """The AVUs of the sidecar at path and its stat, or None when there is none (raises SidecarError when it
    cannot be taken). Never opens a FIFO or device; a symlink only in a zone that follows them."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow_symlinks else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        if os.path.islink(path):  # meant as the sidecar: the file is not ingested without its AVUs
            raise SidecarError("is a symlink to nothing") from None
        return None
    except OSError as e:
        if e.errno == errno.ELOOP and not follow_symlinks:
            raise SidecarError("is a symlink (the zone has symlinks = \"skip\")") from None
        raise SidecarError(f"cannot be read: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SidecarError("is not a regular file")
        if st.st_size > MAX_SIDECAR_BYTES:
            raise SidecarError(f"is {st.st_size} bytes long (at most {MAX_SIDECAR_BYTES})")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(MAX_SIDECAR_BYTES + 1)
    except OSError as e:
        raise SidecarError(f"cannot be read: {e.strerror}") from None
    finally:
        os.close(fd)
    return parse(data), st


def file_sidecar(pattern: str, rel: str) -> str:
    """The relative path of a file's sidecar: `pattern` with {name} the file's name, in its directory."""
    d, _, name = rel.rpartition("/")
    side = pattern.replace("{name}", name)
    return f"{d}/{side}" if d else side


def dir_sidecar(name: str, rel: str) -> str:
    """The relative path of the sidecar of a file's directory."""
    d = rel.rpartition("/")[0]
    return f"{d}/{name}" if d else name


def name_regex(sidecar: str, dir_sidecar_name: str) -> str | None:
    """A regex of the landing names that are sidecars (whole-name match), None if there are none."""
    pats = []
    if sidecar:
        head, _, tail = sidecar.partition("{name}")
        pats.append(re.escape(head) + ".+" + re.escape(tail))
    if dir_sidecar_name:
        pats.append(re.escape(dir_sidecar_name))
    return "(?s:" + "|".join(pats) + r")\Z" if pats else None
