"""What the ownership and replica tests need on the real iRODS server, made as rods and removed afterwards:
a rodsuser and a group (``ingestd_access_user_<pid>``, ``ingestd_access_grp_<pid>``), a second unixfilesystem
resource (``ingestd_access_resc2_<pid>``, vault under /var/lib/irods), and a view of the server as that user (its own
irods_environment.json and password, for the pipeline to run as it)."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import irods.exception as iex
import pytest
from irods.access import iRODSAccess
from irods.models import Collection, DataObject

# named per test session (its pid): two sessions on one server never remove each other's user, group or resource
_SESSION = os.getpid()
USER = f"ingestd_access_user_{_SESSION}"
GROUP = f"ingestd_access_grp_{_SESSION}"
RESC2 = f"ingestd_access_resc2_{_SESSION}"
VAULT2 = Path(f"/var/lib/irods/ingestd_access_resc2_{_SESSION}_vault")


class AsUser:
    """The real server as seen by another user: what tests.pipeline_harness.Pipeline asks of a server."""

    real = True

    def __init__(self, admin: Any, user: str, password: str) -> None:
        self.admin = admin
        self.env = {**admin.env, "irods_user_name": user}
        self.user = user
        self.password = password
        self.home = admin.home  # the zones' collections go under rods' home, where the user may not write

    def write_env_file(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.env, indent=2) + "\n")
        return path

    def session(self, **kw: Any) -> Any:
        from irods.session import iRODSSession

        return iRODSSession(**{**self.env, "password": self.password, **kw})


@dataclass
class AccessServer:
    admin: Any  # the real server as rods
    user: AsUser

    def grant(self, coll: str, level: str, who: str = USER) -> None:
        """As rods: the collection exists and `who` has `level` on it."""
        with self.admin.session() as s:
            if not s.collections.exists(coll):
                s.collections.create(coll, recurse=True)
            s.acls.set(iRODSAccess(level, coll, who))


def object_acls(admin: Any, path: str) -> dict[str, str]:
    """user or group name → access level on a data object (as the catalog writes it: read_object, own...)."""
    with admin.session() as s:
        return {a.user_name: a.access_name for a in s.acls.get(s.data_objects.get(path))}


def collection_acls(admin: Any, coll: str) -> tuple[bool, dict[str, str]]:
    with admin.session() as s:
        c = s.collections.get(coll)
        return bool(c.inheritance), {a.user_name: a.access_name for a in s.acls.get(c)}


def replicas(admin: Any, path: str) -> list[tuple[str, str, str]]:
    """(resource, status, checksum) of each replica."""
    coll, _, name = path.rpartition("/")
    with admin.session() as s:
        q = s.query(DataObject.replica_number, DataObject.resc_hier, DataObject.replica_status,
                    DataObject.checksum).filter(Collection.name == coll).filter(DataObject.name == name)
        rows = sorted(q, key=lambda r: int(r[DataObject.replica_number]))
        return [(r[DataObject.resc_hier], str(r[DataObject.replica_status]), r[DataObject.checksum] or "")
                for r in rows]


def _real_only(irods: Any) -> None:
    if not getattr(irods, "real", False):
        pytest.skip("needs the real iRODS server (users, groups, resources, ACLs and policies as it has them)")


@pytest.fixture(scope="module")
def access_server(irods_server: Any) -> Iterator[AccessServer]:
    _real_only(irods_server)
    password = secrets.token_hex(8)
    with irods_server.session() as s:
        try:
            s.users.get(USER)
        except iex.UserDoesNotExist:
            s.users.create(USER, "rodsuser")
        s.users.modify(USER, "password", password)
        try:
            s.groups.get(GROUP)
        except iex.GroupDoesNotExist:
            s.groups.create(GROUP)
        try:
            s.resources.get(RESC2)
        except iex.ResourceDoesNotExist:
            s.resources.create(RESC2, "unixfilesystem", host=socket.gethostname(), path=str(VAULT2))
    yield AccessServer(irods_server, AsUser(irods_server, USER, password))
    with irods_server.session() as s:
        for remove in (lambda: s.resources.remove(RESC2), lambda: s.groups.remove(GROUP),
                       lambda: s.users.remove(USER)):
            with contextlib.suppress(Exception):  # what a test left there is reported by that test, not here
                remove()
    shutil.rmtree(VAULT2, ignore_errors=True)


def remove_all(admin: Any, coll: str) -> None:
    """As rods, remove a collection whatever the user made in it (rods takes own of it all first)."""
    with admin.session() as s:
        with contextlib.suppress(Exception):
            if s.collections.exists(coll):
                s.acls.set(iRODSAccess("own", coll, admin.user), recursive=True, admin=True)
                s.collections.remove(coll, recurse=True, force=True)
