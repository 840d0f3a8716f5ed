"""Build and cache a Debian 12 root file system for the systemd end-to-end tests.

Two cached layers live outside the checkout (default ``/var/cache/irods-ingestd-e2e``, override with
``INGESTD_E2E_CACHE``):

``bookworm-<hash>``
    ``debootstrap --variant=minbase`` with systemd as PID 1, Redis and Python. The hash covers the
    package list, suite and mirror, so changing :data:`PACKAGES` builds a new one (~2-3 minutes).
``deps-<hash>``
    a copy of the base with ``/opt/irods-ingestd`` (a venv holding every dependency of the project,
    installed from wheels built on the host). The hash covers the base and the dependency wheels'
    names, so it is rebuilt when ``setup.cfg``'s requirements change.

The project itself changes every run, so it is *not* in any cached layer: :func:`project_wheelhouse`
builds its wheel (``--no-deps``) into a per-run directory, and the booted container installs it into
its volatile overlay (see ``tests/e2e/scripts/install.sh``), the way an administrator follows
``packaging/systemd/README.md``.

Run ``python -m tests.e2e.rootfs`` to build (or check) the cache by hand.
"""

from __future__ import annotations

import configparser
import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE_ROOT = Path(os.environ.get("INGESTD_E2E_CACHE", "/var/cache/irods-ingestd-e2e"))
SUITE = "bookworm"
MIRROR = os.environ.get("INGESTD_E2E_MIRROR", "http://deb.debian.org/debian")
# What the container needs: systemd as PID 1 (systemd, systemd-sysv, dbus), procps for /bin/kill
# (ExecReload=) and pgrep, Python for the venv, Redis for RQ.
PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "procps",
    "python3",
    "python3-venv",
    "redis-server",
    "ca-certificates",
)
# The extras installed into the container's venv: the native journald/sd_notify path.
EXTRAS = ("systemd",)
VENV = "/opt/irods-ingestd"


def log(msg: str) -> None:
    print(f"[rootfs] {msg}", file=sys.stderr, flush=True)


def _hash(*parts: str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode())
        h.update(b"\0")
    return h.hexdigest()[:12]


def base_key() -> str:
    return f"{SUITE}-" + _hash(SUITE, MIRROR, "minbase", *sorted(PACKAGES))


@contextlib.contextmanager
def _locked(name: str) -> Iterator[None]:
    CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    with open(CACHE_ROOT / f".{name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _run(cmd: list[str], **kw: object) -> None:
    log("+ " + " ".join(cmd))
    subprocess.run(cmd, check=True, **kw)  # type: ignore[call-overload]


def nspawn_run(
    root: Path,
    *cmd: str,
    binds: tuple[tuple[Path, str], ...] = (),
    rw_binds: tuple[tuple[Path, str], ...] = (),
) -> None:
    """Run one command inside ``root`` (no boot) with /proc, /dev etc. set up by nspawn."""
    args = ["systemd-nspawn", "-q", "--register=no", "--keep-unit", "-D", str(root), "--pipe"]
    for src, dst in binds:
        args.append(f"--bind-ro={src}:{dst}")
    for src, dst in rw_binds:
        args.append(f"--bind={src}:{dst}")
    _run([*args, "--", *cmd], stdin=subprocess.DEVNULL)


def _cached(target: Path, label: str, build: Callable[[Path], None]) -> Path:
    """``target`` if a complete copy is cached; else build it into a temporary directory beside it (under
    a lock, so parallel test runs build it once) and move it into place only when ``build`` succeeded."""
    if (target / ".complete").exists():
        return target
    with _locked(label):
        if (target / ".complete").exists():
            return target
        t0 = time.monotonic()
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=CACHE_ROOT))
        try:
            build(tmp)
            (tmp / ".complete").write_text(f"built in {time.monotonic() - t0:.0f}s\n")
            if target.exists():
                shutil.rmtree(target)
            tmp.rename(target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        log(f"{label} rootfs {target} built in {time.monotonic() - t0:.0f}s")
    return target


def base_rootfs() -> Path:
    """The debootstrap'd rootfs, built once and cached."""

    def build(tmp: Path) -> None:
        _run(
            [
                "debootstrap",
                "--variant=minbase",
                "--include=" + ",".join(PACKAGES),
                SUITE,
                str(tmp),
                MIRROR,
            ],
            stdin=subprocess.DEVNULL,
        )
        _prepare_base(tmp)

    return _cached(CACHE_ROOT / base_key(), "base", build)


def _prepare_base(root: Path) -> None:
    """Trim the boot: no getty on the console, no units that cannot work in a container."""
    (root / "etc/hostname").write_text("ingestd-e2e\n")
    (root / "etc/machine-id").write_text("")  # systemd makes a transient one at boot
    # nspawn has a console, not a tty login: keep boot quiet and quick.
    for unit in ("console-getty.service", "getty@tty1.service"):
        link = root / "etc/systemd/system" / unit
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to("/dev/null")
    # Redis is started by the tests when they want it, not at every boot.
    wants = root / "etc/systemd/system/multi-user.target.wants/redis-server.service"
    if wants.is_symlink() or wants.exists():
        wants.unlink()
    # journald: keep everything in memory/var/log; nothing to forward.
    dropin = root / "etc/systemd/journald.conf.d"
    dropin.mkdir(parents=True, exist_ok=True)
    (dropin / "e2e.conf").write_text("[Journal]\nStorage=volatile\nRateLimitBurst=0\n")


def requirements() -> list[str]:
    """install_requires (+ the extras we test with) from setup.cfg."""
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    reqs = [r.strip() for r in cfg["options"]["install_requires"].splitlines() if r.strip()]
    extras = cfg["options.extras_require"] if cfg.has_section("options.extras_require") else {}
    for extra in EXTRAS:
        reqs += [r.strip() for r in extras.get(extra, "").splitlines() if r.strip()]
    return reqs


def pip() -> list[str]:
    return [sys.executable, "-m", "pip"]


def target_python_version(root: Path) -> str:
    """The rootfs's python3 version (Debian 12: 3.11.2): environment markers depend on it."""
    out = subprocess.run(
        [
            "systemd-nspawn",
            "-q",
            "--register=no",
            "--keep-unit",
            "-D",
            str(root),
            "--pipe",
            "--",
            "/usr/bin/python3",
            "-c",
            "import platform; print(platform.python_version())",
        ],
        check=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
    ).stdout
    return out.strip().splitlines()[-1]


def deps_wheelhouse(pyver: str) -> Path:
    """Wheels of every dependency (cached by requirement set and target Python).

    Built on the host with the venv's pip (systemd-python compiles here, against the same Debian 12
    libsystemd). :func:`deps_rootfs` completes it with the *target* interpreter's pip: Debian's Python
    is 3.11.2, so e.g. redis needs async-timeout there but not on a newer host Python, and pip
    cannot evaluate ``python_full_version`` markers for another interpreter.
    """
    reqs = requirements()
    target = CACHE_ROOT / ("wheels-" + _hash(pyver, *sorted(reqs)))
    if (target / ".complete").exists():
        return target
    with _locked("wheels"):
        if (target / ".complete").exists():
            return target
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=CACHE_ROOT))
        try:
            _run([*pip(), "wheel", "-q", "-w", str(tmp), *reqs], stdin=subprocess.DEVNULL)
            _complete_for_target(tmp, pyver)
            (tmp / "requirements.txt").write_text("\n".join(reqs) + "\n")
            (tmp / ".complete").write_text("ok\n")
            if target.exists():
                shutil.rmtree(target)
            tmp.rename(target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


def _complete_for_target(wheelhouse: Path, pyver: str) -> None:
    """Add wheels for requirements that only the target's markers select (closure, no resolver)."""
    import zipfile

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name, parse_wheel_filename

    env = {"python_version": ".".join(pyver.split(".")[:2]), "python_full_version": pyver, "extra": ""}
    for _ in range(10):
        have = {canonicalize_name(parse_wheel_filename(w.name)[0]): w for w in wheelhouse.glob("*.whl")}
        missing: list[str] = []
        for whl in have.values():
            with zipfile.ZipFile(whl) as zf:
                meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
                lines = zf.read(meta).decode("utf-8", "replace").splitlines()
            for line in lines:
                if not line.startswith("Requires-Dist:"):
                    continue
                req = Requirement(line.split(":", 1)[1].strip())
                if req.marker is not None and not req.marker.evaluate(env):
                    continue
                if canonicalize_name(req.name) not in have:
                    missing.append(str(req).split(";")[0])
        if not missing:
            return
        _run([*pip(), "wheel", "-q", "-w", str(wheelhouse), *sorted(set(missing))], stdin=subprocess.DEVNULL)
    raise RuntimeError(f"could not complete the wheelhouse for Python {pyver}")


def deps_rootfs() -> Path:
    """Base rootfs + /opt/irods-ingestd venv with the project's dependencies (cached)."""
    base = base_rootfs()
    wheels = deps_wheelhouse(target_python_version(base))

    def build(tmp: Path) -> None:
        tmp.rmdir()
        _run(["cp", "-a", "--reflink=auto", str(base), str(tmp)])
        (tmp / ".complete").unlink()
        nspawn_run(tmp, "/usr/bin/python3", "-m", "venv", VENV)
        nspawn_run(
            tmp,
            f"{VENV}/bin/pip",
            "install",
            "-q",
            "--no-index",
            "--find-links=/mnt/wheels",
            "-r",
            "/mnt/wheels/requirements.txt",
            binds=((wheels, "/mnt/wheels"),),
        )

    return _cached(CACHE_ROOT / ("deps-" + _hash(base.name, wheels.name)), "deps", build)


def project_wheelhouse(dest: Path) -> Path:
    """Build this checkout's wheel (without dependencies) into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as build:
        # Build from a copy so that build/ and *.egg-info never land in the shared checkout.
        src = Path(build) / "src"
        shutil.copytree(
            REPO,
            src,
            ignore=shutil.ignore_patterns(
                ".git",
                ".venv",
                "build",
                "*.egg-info",
                "__pycache__",
                ".mypy_cache",
                ".ruff_cache",
                ".pytest_cache",
            ),
        )
        _run([*pip(), "wheel", "-q", "--no-deps", "-w", str(dest), str(src)], stdin=subprocess.DEVNULL)
    return dest


def main() -> int:
    t0 = time.monotonic()
    base = base_rootfs()
    log(f"base: {base} ({time.monotonic() - t0:.0f}s)")
    t1 = time.monotonic()
    deps = deps_rootfs()
    log(f"deps: {deps} ({time.monotonic() - t1:.0f}s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
