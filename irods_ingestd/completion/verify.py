"""The worker's check of a file against the sum its manifest lists (``FileItem.expect``).

It compares the digest of what was copied (the bytes hashed as they were streamed to iRODS, whose own
checksum the worker has already matched) with the listed sum. An MD5 the copy was not hashed with is taken
from the landing file, checked to be the very file copied (same device, inode, size, mtime) after the read:
the copy matched it in the server's scheme, so its MD5 is the copy's too.
"""

from __future__ import annotations

from .. import checksums
from ..checksums import Digest
from ..ingest import local
from ..ingest.errors import PermanentError
from ..ingest.local import Local
from ..job import FileItem
from . import manifest


class ManifestMismatch(PermanentError):
    """The copy's sum is not the one the manifest lists: the file fails; its directory is held."""

    kind = "manifest"


def check(item: FileItem, dig: Digest, loc: Local) -> None:
    """Nothing when the item lists no sum or the copy has it; ManifestMismatch otherwise."""
    if not item.expect:
        return
    algo, want = manifest.split(item.expect)
    if algo == "sha256":
        got = dig.sha256.hex()
    elif algo == "md5":
        have = dig.by_scheme.get(checksums.MD5)
        if have is None:
            have = checksums.file_digest(loc.path, (checksums.MD5,), loc.opener()).by_scheme[checksums.MD5]
            local.recheck(loc)
        got = have.hex()
    else:
        raise ManifestMismatch(f"manifest: unknown sum {item.expect!r}")
    if got != want:
        raise ManifestMismatch(f"manifest: {algo} mismatch: the manifest lists {want}, the copy has {got}; "
                               f"not ingested, and no file of its directory is moved or deleted")
