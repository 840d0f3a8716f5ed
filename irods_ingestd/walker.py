"""The walker: a function of one directory.

`walk_dir` lists one directory of a zone with `os.scandir`, stats its regular files (lstat: the entry
itself) and returns the files, the subdirectories to visit and what it skipped. It keeps no state, so a
tree can be walked by a loop over a stack of directories here, or later by many walk jobs on many hosts.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field

from .filters import NameFilter, special_kind


@dataclass(slots=True)
class Listing:
    reldir: str
    files: list[tuple[str, int, int]] = field(default_factory=list)  # (name, size, mtime_ns)
    subdirs: list[str] = field(default_factory=list)  # relative paths
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (relative path, reason)
    error: str | None = None  # the directory itself could not be read
    # with report_excluded: the names the zone's patterns pass over, which the walk otherwise drops silently
    excluded: list[tuple[str, str]] = field(default_factory=list)  # (relative path, reason)
    report_excluded: bool = False

    def pass_over(self, names: NameFilter, name: str, rel: str) -> None:
        self.excluded.append((rel, names.explain(name, rel) or "excluded"))


def join(reldir: str, name: str) -> str:
    return f"{reldir}/{name}" if reldir else name


def walk_dir(root: str, reldir: str, names: NameFilter, follow_symlinks: bool = False,
             report_excluded: bool = False) -> Listing:
    """List root/reldir: regular files wanted by `names`, subdirectories, and skipped entries (with
    report_excluded, also the files and directories the patterns pass over, with `names.explain`'s reason)."""
    out = Listing(reldir, report_excluded=report_excluded)
    path = os.path.join(root, reldir) if reldir else root
    try:
        it = os.scandir(path)
    except OSError as e:
        out.error = f"cannot read directory: {e.strerror or e}"
        return out
    files = out.files
    wanted = names.wanted
    with it:
        while True:
            try:
                entry = next(it)
            except StopIteration:
                break
            except OSError as e:  # a directory vanishing or failing mid-listing
                out.error = f"listing interrupted: {e.strerror or e}"
                break
            name = entry.name
            if entry.is_file(follow_symlinks=False):  # the hot path: a regular file, by d_type
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    st = None
                if st is not None and stat.S_ISREG(st.st_mode):
                    if wanted(name, lambda: join(reldir, name)):  # noqa: B023 - called at once
                        files.append((name, st.st_size, st.st_mtime_ns))
                    elif report_excluded:
                        out.pass_over(names, name, join(reldir, name))
                    continue
            _other_entry(out, root, entry, join(reldir, name), names, follow_symlinks)
    return out


def _other_entry(out: Listing, root: str, entry: os.DirEntry[str], rel: str, names: NameFilter,
                 follow_symlinks: bool) -> None:
    """An entry that is not a regular file by its d_type: a subdirectory to visit, a symlink (followed
    only inside the zone, to a file), a special file, or a file whose d_type the file system did not say."""
    name = entry.name
    try:
        if entry.is_dir(follow_symlinks=False):
            if not names.dir_excluded(name, rel):
                out.subdirs.append(rel)
            elif out.report_excluded:
                out.excluded.append((rel, names.explain_dir(name, rel)))
            return
        if entry.is_symlink():
            if not follow_symlinks:
                out.skipped.append((rel, "symlink (not followed)"))
                return
            try:
                st = entry.stat(follow_symlinks=True)
            except OSError:
                out.skipped.append((rel, "dangling or looping symlink"))
                return
            if stat.S_ISDIR(st.st_mode):
                out.skipped.append((rel, "symlink to a directory (not followed)"))
                return
            if not inside(root, entry.path):
                out.skipped.append((rel, "symlink pointing outside the zone (not followed)"))
                return
        else:
            st = entry.stat(follow_symlinks=False)
    except OSError as e:
        if e.errno == errno.ENOENT:
            return  # vanished between listing and stat
        reason = "dangling or looping symlink" if e.errno in (errno.ELOOP,) else \
            f"cannot stat: {e.strerror or e}"
        out.skipped.append((rel, reason))
        return
    kind = special_kind(st.st_mode)
    if kind:
        out.skipped.append((rel, f"{kind} (never opened)"))
        return
    if not stat.S_ISREG(st.st_mode):
        out.skipped.append((rel, "not a regular file"))
        return
    why = names.reason_to_skip(name, rel)
    if why:
        if out.report_excluded:
            out.pass_over(names, name, rel)
        return  # temporary and excluded names are silently passed over
    out.files.append((name, st.st_size, st.st_mtime_ns))


def inside(root: str, path: str) -> bool:
    """True if path, with every symlink resolved, is below root: a followed link may not leave the zone."""
    real_root = os.path.realpath(root)
    return os.path.realpath(path).startswith(real_root.rstrip("/") + "/")


def stat_file(root: str, rel: str, follow_symlinks: bool = False) -> tuple[int, int] | str | None:
    """(size, mtime_ns) of a regular file; a reason string if it must be skipped; None if it is gone."""
    path = os.path.join(root, rel)
    try:
        st = os.stat(path, follow_symlinks=follow_symlinks)
    except FileNotFoundError:
        return None
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "dangling or looping symlink"
        return f"cannot stat: {e.strerror or e}"
    if stat.S_ISLNK(st.st_mode):
        return "symlink (not followed)"
    kind = special_kind(st.st_mode)
    if kind:
        return f"{kind} (never opened)"
    if stat.S_ISDIR(st.st_mode):  # a followed link to one: said as the walk says it, so it is reported once
        return "symlink to a directory (not followed)" if follow_symlinks and os.path.islink(path) else "directory"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if follow_symlinks and os.path.islink(path) and not inside(root, path):
        return "symlink pointing outside the zone (not followed)"
    return st.st_size, st.st_mtime_ns
