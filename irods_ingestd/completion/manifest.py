"""Manifests: the files a delivery is made of, with their MD5 or SHA-256 sums.

The formats of GNU ``sha256sum``/``md5sum`` (and their ``--tag``-less output on other systems)::

    <hex>  <relpath>        text mode (two spaces)
    <hex> *<relpath>        binary mode

64 hex digits are SHA-256, 32 are MD5. Paths are relative to the manifest's directory (``./`` allowed);
blank lines and lines starting with ``#`` are skipped; a line starting with ``\\`` has an escaped name
(``\\\\``, ``\\n`` and ``\\r``), as GNU writes names holding a backslash or a newline. An absolute path, ``..``, a
path listed twice or a line in no known format makes the manifest bad (:class:`BadManifest`, naming
the line): nothing of its directory is ingested until it is fixed. A line for the manifest itself is skipped:
``sha256sum * > MANIFEST.sha256`` writes one, with the sum of the empty file the shell had just created (no
file can hold its own sum).

An expected sum travels in the job as ``"sha256:<hex>"`` or ``"md5:<hex>"`` (:attr:`FileItem.expect`).
"""

from __future__ import annotations

import errno
import os
import re
import stat

MAX_BYTES = 64 << 20  # a manifest larger than this is refused (a listing, not data)
_LINE = re.compile(r"^([0-9A-Fa-f]+) ([ *])(.+)$")
_ALGO_BY_LEN = {64: "sha256", 32: "md5"}


class BadManifest(ValueError):
    """The manifest cannot be used; the message names the line."""


_ESCAPES = {"n": "\n", "r": "\r", "\\": "\\"}  # what GNU coreutils (9.x: \r too) writes for these in a name


def _unescape(name: str) -> str:
    out, i = [], 0
    while i < len(name):
        ch = name[i]
        if ch == "\\" and i + 1 < len(name):
            nxt = name[i + 1]
            out.append(_ESCAPES.get(nxt, "\\" + nxt))
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _clean(path: str, lineno: int) -> str:
    if path.startswith("/"):
        raise BadManifest(f"line {lineno}: {path!r} is absolute (paths are relative to the manifest)")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise BadManifest(f"line {lineno}: {path!r} is not a path below the manifest's directory")
    return "/".join(parts)


def parse(text: str, own: str = "") -> dict[str, str]:
    """Relative path → expected sum (``"sha256:<hex>"``/``"md5:<hex>"``); BadManifest. A line for `own` (the
    manifest's name) is skipped."""
    out: dict[str, str] = {}
    seen_own = False
    text = text.removeprefix("\ufeff")  # a byte order mark (Windows tools write one)
    for lineno, line in enumerate(text.split("\n"), 1):
        line = line.rstrip("\r")
        if not line.strip() or line.startswith("#"):
            continue
        escaped = line.startswith("\\")
        m = _LINE.match(line[1:] if escaped else line)
        if m is None:
            raise BadManifest(f"line {lineno}: not '<hex>  <path>' or '<hex> *<path>': {line[:80]!r}")
        hexsum, name = m.group(1).lower(), m.group(3)
        algo = _ALGO_BY_LEN.get(len(hexsum))
        if algo is None:
            raise BadManifest(f"line {lineno}: a sum of {len(hexsum)} hex digits is neither SHA-256 (64) nor "
                              f"MD5 (32)")
        rel = _clean(_unescape(name) if escaped else name, lineno)
        if rel in out:
            raise BadManifest(f"line {lineno}: {rel!r} is listed twice")
        if rel != own:
            out[rel] = f"{algo}:{hexsum}"
        else:
            out[rel], seen_own = "", True
    if seen_own:
        del out[own]
    if not out:
        raise BadManifest("it lists no file" + (" but itself" if seen_own else ""))
    return out


def read(path: str) -> dict[str, str]:
    """The manifest at `path`, parsed (its bytes decoded as UTF-8 with surrogateescape, like every landing
    path); BadManifest, or OSError when it cannot be read."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # a FIFO put in its place never blocks
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", path)
        data = f.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise BadManifest(f"larger than {MAX_BYTES >> 20} MiB")
    return parse(os.fsdecode(data) if isinstance(data, bytes) else data, os.path.basename(path))


def split(expect: str) -> tuple[str, str]:
    """``"sha256:<hex>"`` → ("sha256", "<hex>")."""
    algo, _, hexsum = expect.partition(":")
    return algo, hexsum
