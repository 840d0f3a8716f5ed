"""Checksums in the iRODS server's own scheme.

A server answers checksums in its ``default_hash_scheme`` (``/etc/irods/server_config.json``): SHA256 as
``sha2:`` + base64 of the digest (the default), MD5 as 32 hex digits, and so on. A worker does not know
the scheme before the first answer, so it hashes a file with SHA-256 (always: the ledger keeps a piece of
it) and with the scheme it last saw (MD5 too while it has seen none); a server answer in a scheme the
digest lacks is computed from the file on demand (:meth:`Digest.extended`). Never is a file failed
because the server hashes with another function than ours.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

SHA2, MD5, SHA1, SHA512 = "sha2", "md5", "sha1", "sha512"
# scheme → (hashlib name, iRODS prefix); MD5 has no prefix and is written in hex
_ALGOS: dict[str, tuple[str, str]] = {SHA2: ("sha256", "sha2:"), MD5: ("md5", ""), SHA1: ("sha1", "sha1:"),
                                      SHA512: ("sha512", "sha512:")}
_MD5_HEX = re.compile(r"[0-9a-f]{32}")
CHUNK = 8 * 1024 * 1024


class UnknownScheme(ValueError):
    """The server answered a checksum in a scheme this worker cannot compute."""


def scheme_of(checksum: str) -> str:
    """The scheme of a checksum string as the server writes it; raises UnknownScheme."""
    for scheme, (_algo, prefix) in _ALGOS.items():
        if prefix and checksum.startswith(prefix):
            return scheme
    if _MD5_HEX.fullmatch(checksum):
        return MD5
    raise UnknownScheme(f"iRODS answered a checksum in a scheme irods-ingestd cannot compute: {checksum[:24]!r}")


def irods_format(scheme: str, digest: bytes) -> str:
    algo, prefix = _ALGOS[scheme]
    return digest.hex() if scheme == MD5 else prefix + base64.b64encode(digest).decode()


@dataclass
class Digest:
    """A file's digests by scheme (SHA-256 always)."""

    by_scheme: dict[str, bytes] = field(default_factory=dict)

    @property
    def sha256(self) -> bytes:
        return self.by_scheme[SHA2]

    def irods(self, scheme: str = SHA2) -> str:
        return irods_format(scheme, self.by_scheme[scheme])

    def matches(self, checksum: str) -> bool:
        """True if the server's checksum is this file's (in whatever scheme it is written)."""
        scheme = scheme_of(checksum)
        return scheme in self.by_scheme and self.irods(scheme) == checksum

    def extended(self, checksum: str, path: str, opener: Any = None) -> Digest:
        """This digest plus the scheme of `checksum` (computed from `path` when missing)."""
        scheme = scheme_of(checksum)
        if scheme in self.by_scheme:
            return self
        extra = file_digest(path, (scheme,), opener)
        return Digest({**self.by_scheme, **extra.by_scheme})


class Hasher:
    """SHA-256 plus the given schemes, fed chunk by chunk."""

    def __init__(self, schemes: tuple[str, ...] = ()) -> None:
        wanted = dict.fromkeys((SHA2, *schemes))
        self._h = {s: hashlib.new(_ALGOS[s][0]) for s in wanted}

    def update(self, data: bytes) -> None:
        for h in self._h.values():
            h.update(data)

    def digest(self) -> Digest:
        return Digest({s: h.digest() for s, h in self._h.items()})


def schemes_for(known: str | None) -> tuple[str, ...]:
    """What to hash besides SHA-256, given the scheme the server answered last (None: not seen yet)."""
    if known is None:
        return (MD5,)
    return () if known == SHA2 else (known,)


def file_digest(path: str, schemes: tuple[str, ...] = (), opener: Any = None) -> Digest:
    h = Hasher(schemes)
    with open(path, "rb", buffering=0, opener=opener) as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.digest()
