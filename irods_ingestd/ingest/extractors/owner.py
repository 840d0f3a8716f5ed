"""Who wrote the landing file: its unix owner and group (names where this host knows them, else ids)."""

from __future__ import annotations

import grp
import os
import pwd

from irods.meta import iRODSMeta

from ... import names
from ...job import FileItem, ZoneSpec
from ..metadata import AVU_PREFIX


def avus(zone: ZoneSpec, item: FileItem, target: names.Target, host: str) -> list[iRODSMeta]:
    st = os.lstat(os.path.join(zone.root, item.rel))
    try:
        user = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        user = str(st.st_uid)
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    return [iRODSMeta(AVU_PREFIX + "owner", user), iRODSMeta(AVU_PREFIX + "group", group)]
