"""State and helpers the request handler groups of the test server share (the server class mixes them in)."""

from __future__ import annotations

import os
import threading
from collections import Counter

from .catalog import Catalog
from .errors import E, IrodsError


class ServerBase:
    catalog: Catalog
    vault: str
    zone: str
    resource: str
    lock: threading.RLock
    counters: Counter[str]

    def norm(self, path: str | None) -> str:
        if not path or not path.startswith("/"):
            raise IrodsError(E.USER_INPUT_PATH_ERR, f"bad logical path {path!r}")
        parts = [p for p in path.split("/") if p]
        if any(p in (".", "..") for p in parts):
            raise IrodsError(E.USER_INPUT_PATH_ERR, f"bad logical path {path!r}")
        return "/" + "/".join(parts)

    def vault_path(self, logical: str) -> str:
        rel = logical.split("/", 2)[2] if logical.count("/") >= 2 else ""
        return os.path.join(self.vault, rel)

    def in_vault(self, phys: str) -> bool:
        return phys == self.vault or phys.startswith(self.vault + os.sep)

    def remove_phys(self, phys: str) -> None:
        """Delete a replica's file, but only inside the vault (a registered file stays where it is)."""
        if phys and self.in_vault(phys):
            try:
                os.unlink(phys)
            except OSError:
                pass

    def check_resource(self, kw: dict) -> None:
        for key in ("destRescName", "rescName", "defRescName"):
            name = kw.get(key)
            if name and name.split(";")[0] != self.resource:
                raise IrodsError(E.SYS_RESC_DOES_NOT_EXIST, f"resource {name!r} does not exist")
