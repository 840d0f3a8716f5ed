"""The fault campaign, short version (CI): a few hundred files, 18 faults, every kind at least once.

Runs bench/chaos.py's campaign (`python -m bench.chaos --short`) in-process and asserts what its table
reports: nothing lost, duplicated, wrong or stray, no landing file moved away or deleted before its object
was verified, every earlier version of a reused name kept at `name.~k~`, RQ's started registry empty after
the drain (deferred deletes and moves done), failures only those the injected errors explain, and no
process that exited by itself (a second daemon refused because the first runs its zones is not a crash).
The iRODS outage is a little longer than the workers' retry budget, so files must be handed back to the
daemon and queued again rather than failed. The full version is `make chaos`.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import pytest

from tests.chaos.campaign import BACKOFF, BACKOFF_MAX, DEFAULT_KINDS, RETRIES, SYSCTL, Campaign, Options, report
from tests.chaos.faults import retry_budget

pytestmark = pytest.mark.slow


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
def test_short_fault_campaign(tmp_path: Path) -> None:
    seed = int(os.environ.get("INGESTD_CHAOS_SEED", "7"))
    outage = retry_budget(RETRIES, BACKOFF, BACKOFF_MAX) + 7.0
    opts = Options(seed=seed, files=300, faults=18, short=True, large=1, drain_timeout=150.0,
                   workdir=str(tmp_path / "chaos"), outage=outage, same_names=8)
    res = Campaign(opts).run()
    text = report(res)
    print(text)

    inotify_ok = os.access(SYSCTL, os.W_OK)
    for kind in DEFAULT_KINDS:
        if kind == "inotify-overflow" and not inotify_ok:
            continue
        assert res.faults[kind] >= 1, f"fault kind {kind} never injected\n{text}"
    assert sum(res.faults.values()) >= 15, text
    if inotify_ok:
        assert res.overflows_seen >= 1, f"no inotify overflow was provoked\n{text}"
    assert res.large_kills_in_flight >= 1, f"no worker was killed during a 40 MiB put\n{text}"

    # the outage outlasted the retries: files were handed back (and queued again: nothing failed for it)
    assert res.faults["irods-outage"] == 1, text
    assert res.extra.outage_seconds and res.extra.outage_seconds[0] >= outage - 1, text
    assert res.extra.handed_back_files >= 1, f"the outage handed no file back to the daemon\n{text}"
    # every second daemon was refused, took over, or (a product without the lock) ran alongside
    assert sum(res.extra.second.values()) == res.faults["daemon-second"], text
    if importlib.util.find_spec("irods_ingestd.daemonlock") is not None:
        assert not res.extra.second["alongside"], f"two daemons ran the same zones\n{text}"
        assert sum(res.extra.refusals.values()) >= 1, f"no daemon was ever refused\n{text}"
    # reused names in the delete zone: every version written, the earlier ones kept as name.~k~
    sn = res.same_name
    assert sn.names == 8 and not sn.gave_up, text
    assert sn.versions_written >= 2 * sn.names, text
    assert sn.swapped >= 1, f"no version was renamed onto a verified file before its delete\n{text}"

    f = res.findings
    assert f is not None, text
    assert res.drained, f"not drained within {opts.drain_timeout}s after the last fault\n{text}"
    assert not f.lost, text
    assert not f.duplicated, text
    assert not f.wrong, text
    assert not f.stray, text
    assert not f.extra, text
    assert not f.removed_unverified, text
    assert not f.after_pending, text
    assert not f.leftovers, text
    assert not f.unexpected, text
    assert not f.landing_changed, text
    assert f.jobs_started == 0, text
    assert f.jobs_waiting == 0, text
    assert not f.failed_listed, text
    assert not res.unexplained_failures, text
    assert not res.crashes, text
    assert f.present_ok == res.files >= 300, text
    assert f.versions_ok == f.versions == sn.versions_written - sn.names, text
