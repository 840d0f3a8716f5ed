"""The fault campaign, short version (CI): a few hundred files, 18 faults, every kind at least once.

Runs bench/chaos.py's campaign (`python -m bench.chaos --short`) in-process and asserts what its table
reports: nothing lost, duplicated, wrong or stray, no landing file moved away before its object was
verified, RQ's started registry empty after the drain, failures only those the injected errors explain,
and no process that exited by itself. The full version is `make chaos`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from bench.chaos import KINDS, SYSCTL, Campaign, Options, report

pytestmark = pytest.mark.slow


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
def test_short_fault_campaign(tmp_path: Path) -> None:
    seed = int(os.environ.get("INGESTD_CHAOS_SEED", "7"))
    opts = Options(seed=seed, files=300, faults=18, short=True, large=1, drain_timeout=150.0,
                   workdir=str(tmp_path / "chaos"))
    res = Campaign(opts).run()
    text = report(res)
    print(text)

    inotify_ok = os.access(SYSCTL, os.W_OK)
    for kind in KINDS:
        if kind == "inotify-overflow" and not inotify_ok:
            continue
        assert res.faults[kind] >= 1, f"fault kind {kind} never injected\n{text}"
    assert sum(res.faults.values()) >= 15, text
    if inotify_ok:
        assert res.overflows_seen >= 1, f"no inotify overflow was provoked\n{text}"
    assert res.large_kills_in_flight >= 1, f"no worker was killed during a 40 MiB put\n{text}"

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
    assert not f.landing_changed, text
    assert f.jobs_started == 0, text
    assert f.jobs_waiting == 0, text
    assert not f.failed_listed, text
    assert not res.unexplained_failures, text
    assert not res.crashes, text
    assert f.present_ok == res.files >= 300, text
