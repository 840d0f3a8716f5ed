"""`make bench`: the benchmarks of irods-ingestd, side by side, in one run.

    python -m bench.run [--quick] [--only NAME ...] [--keep] [--irods real|standin]

Builds its data in a temporary directory, starts its own redis-server, and uses the real iRODS the tests
use (INGESTD_TEST_IRODS_ENV / INGESTD_TEST_IRODS_PASSWORD, else .irods-test/ written by `make irods`);
`--irods standin` (or INGESTD_TEST_IRODS=standin) starts the project's iRODS test server instead. Runs the
benchmarks and prints a table of figures, ratios and PASS/MISS against the goals. NAME: throughput, walk, walk_jobs,
burst, fanotify_burst (inotify vs fanotify, --files N), latency, memory,
ledger (Redis bytes a file for each ledger layout), catalog (PostgreSQL bytes a data object).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

from .common import IRODS_KINDS, Results, Services, default_irods_kind, irods_problem, loadavg, machine

BENCHES = ["throughput", "walk", "walk_jobs", "burst", "fanotify_burst", "latency", "memory", "ledger", "catalog"]
MODULES = {"ledger": "ledger_bytes", "catalog": "catalog_bytes"}  # bench name → module, where they differ


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", action="append", choices=BENCHES, help="run only this benchmark (repeatable)")
    ap.add_argument("--quick", action="store_true", help="smaller data sets (a few minutes in all)")
    ap.add_argument("--dir", help="work directory (default: a new temporary directory, removed after)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs, data)")
    ap.add_argument("--small", type=int, help="throughput: number of 4 KiB files (default 3000; --quick 300)")
    ap.add_argument("--large", type=int, help="throughput: number of 4 MiB files (default 300; --quick 30; 0: none)")
    ap.add_argument("--files", type=int, help="fanotify_burst: files a burst (default 100000; --quick 20000)")
    ap.add_argument("--irods", choices=IRODS_KINDS, default=default_irods_kind(),
                    help="real: the real iRODS of the tests (default); standin: the project's test server "
                         "(counts API calls; default when INGESTD_TEST_IRODS=standin)")
    args = ap.parse_args(argv)
    names = args.only or BENCHES
    problem = irods_problem(args.irods)  # before any data is made
    if problem:
        print(f"bench: {problem}", file=sys.stderr)
        return 2
    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="ingestd-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"irods-ingestd benchmarks {time.strftime('%Y-%m-%d %H:%M:%S %Z')} on {machine()}; "
          f"load {loadavg()}; work dir {work}; {'quick' if args.quick else 'full'} run; "
          f"code {code_version()}", flush=True)
    svc = Services(work, args.irods)
    res = Results()
    t0 = time.monotonic()
    try:
        svc.start()
        print(f"services: {svc.describe()}", flush=True)
        for name in names:
            print(f"\n== {name} (load {loadavg()})", flush=True)
            mod = importlib.import_module(f".{MODULES.get(name, name)}", __package__)
            tb = time.monotonic()
            try:
                if name == "throughput":
                    mod.run(svc, work, res, args.quick, small=args.small, large=args.large)
                elif name == "fanotify_burst":
                    mod.run(svc, work, res, args.quick, files=args.files)
                else:
                    mod.run(svc, work, res, args.quick)
            except Exception as e:  # noqa: BLE001 - one benchmark failing does not hide the others
                traceback.print_exc()
                res.fail(name, "benchmark", f"{type(e).__name__}: {e}")
            print(f"   ({name} took {time.monotonic() - tb:.0f}s)", flush=True)
    finally:
        svc.stop()
        if not args.keep and not args.dir:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\nResults ({time.monotonic() - t0:.0f}s in all; load at the end {loadavg()}):\n")
    print(res.table())
    return 0


def code_version() -> str:
    """The git revision of the checkout the benchmarks import (the package is installed editable), and what
    of irods_ingestd/ differs from it (other engineers' uncommitted work counts): files, and a hash of the
    diff plus the untracked files, so that two runs can be told apart."""
    root = Path(__file__).resolve().parent.parent

    def git(*a: str) -> str:
        return subprocess.run(["git", *a], cwd=root, capture_output=True, text=True, check=True).stdout

    try:
        rev = git("rev-parse", "--short", "HEAD").strip()
        changed = git("status", "--porcelain", "--", "irods_ingestd").splitlines()
        if not changed:
            return rev
        h = hashlib.sha1(git("diff", "HEAD", "--", "irods_ingestd").encode())
        for line in sorted(changed):
            if line.startswith("??"):
                path = root / line[3:].strip()
                for f in sorted(path.rglob("*") if path.is_dir() else [path]):
                    if f.is_file() and f.suffix == ".py":
                        h.update(f.read_bytes())
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no git)"
    names = ", ".join(line[3:].strip().removeprefix("irods_ingestd/") for line in sorted(changed))
    return f"{rev} + uncommitted irods_ingestd/ changes (tree hash {h.hexdigest()[:10]}: {names})"


if __name__ == "__main__":
    sys.exit(main())
