"""Where the configured directories really are: aliasing through symlinks and bind mounts.

Two paths that differ as text can be one directory on disk (a symlink, a bind mount), so zone paths and
`move_to` targets are compared by their real path (`os.path.realpath`) and by the device and inode of
each existing directory on the way up (a bind mount keeps them). A path that does not exist yet (a zone
directory waited for, a `move_to` the workers will create) is placed by its nearest existing ancestor.

What is refused, since a file would be ingested twice or endlessly:

- two zone paths where one is (really) inside the other;
- a `move_to` inside its own zone (the moved file is found again and moved again, forever) or holding it;
- a `move_to` inside another zone, or holding one (the moved file is ingested again there).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


class _Zone(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def path(self) -> Path: ...
    @property
    def after(self) -> str: ...
    @property
    def move_to(self) -> Path | None: ...


@dataclass(frozen=True)
class Place:
    """A directory as it is on disk: its real path, its own (dev, ino) if it exists, and the (dev, ino)
    of every existing directory from it up to /."""

    text: str
    real: str
    own: tuple[int, int] | None
    chain: frozenset[tuple[int, int]]

    def describe(self) -> str:
        return self.text if self.real == os.path.normpath(self.text) else f"{self.text} (really {self.real})"


def place(path: Path | str) -> Place:
    real = os.path.realpath(path)
    own: tuple[int, int] | None = None
    chain: set[tuple[int, int]] = set()
    cur = real
    while True:
        try:
            st = os.stat(cur)
        except OSError:
            st = None
        if st is not None:
            chain.add((st.st_dev, st.st_ino))
            if cur == real:
                own = (st.st_dev, st.st_ino)
        parent = os.path.dirname(cur)
        if parent == cur:
            break
        cur = parent
    return Place(str(path), real, own, frozenset(chain))


def within(a: Place, b: Place) -> bool:
    """True if a is b or below it on disk."""
    if a.real == b.real or a.real.startswith(b.real.rstrip("/") + "/"):
        return True
    return b.own is not None and b.own in a.chain


def overlap(a: Place, b: Place) -> bool:
    return within(a, b) or within(b, a)


def aliasing_problems(zones: list[_Zone]) -> list[str]:
    """Every zone path or move_to that is (really) one of the others or inside it, named by zone and field."""
    problems: list[str] = []
    places = {z.name: place(z.path) for z in zones}
    for i, a in enumerate(zones):
        for b in zones[i + 1:]:
            pa, pb = places[a.name], places[b.name]
            if overlap(pa, pb):
                problems.append(f"zone {a.name!r} and zone {b.name!r}: their paths overlap ({pa.describe()} and "
                                f"{pb.describe()}); a file would be ingested twice")
    for z in zones:
        if z.after != "move" or z.move_to is None:
            continue
        m = place(z.move_to)
        if overlap(m, places[z.name]):
            problems.append(f"zone {z.name!r}.move_to: {m.describe()} is inside the zone's path or holds it "
                            f"({places[z.name].describe()}); a moved file would be found and moved again, endlessly")
        for other in zones:
            if other.name != z.name and overlap(m, places[other.name]):
                problems.append(f"zone {z.name!r}.move_to: {m.describe()} overlaps the path of zone {other.name!r} "
                                f"({places[other.name].describe()}); a moved file would be ingested again there")
    return problems
