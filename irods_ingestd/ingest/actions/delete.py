"""after = "delete": the verified landing file is taken aside to a private name, checked again, unlinked."""

from __future__ import annotations

import os

from ...job import ZoneSpec
from ..after import Verified, take_aside


def run(zone: ZoneSpec, item: Verified, path: str) -> None:
    os.unlink(take_aside(item, path, "del", zone.follow_symlinks))  # a followed link: the link goes
