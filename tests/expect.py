"""Expected values computed independently of the package under test."""

from __future__ import annotations

import base64
import hashlib


def sha2(data: bytes) -> str:
    """iRODS' SHA-256 checksum string of these bytes: `sha2:` + base64 of the digest."""
    return "sha2:" + base64.b64encode(hashlib.sha256(data).digest()).decode()
