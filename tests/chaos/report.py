"""The fault campaign's table and report (tests/chaos/campaign.py): what was injected, what the checks found."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from tests.chaos import faults as chaos_faults

if TYPE_CHECKING:
    from tests.chaos.campaign import Result

MiB = 1 << 20


def table(res: Result) -> str:
    from tests.chaos.campaign import KINDS, OPTIONAL

    f = res.findings
    rows: list[tuple[str, str]] = []
    extra = chaos_faults.rows(res.extra, res.faults)
    for k, label in KINDS.items():
        if k in OPTIONAL and not res.faults.get(k):
            continue
        v = extra.get(k) or str(res.faults.get(k, 0))
        if k == "irods-fail":
            v += f" (calls failed: {res.fail_calls_fired})"
        if k == "worker-kill-large":
            v += f" (caught in flight: {res.large_kills_in_flight})"
        if k == "irods-drop":
            v += f" (during a 40 MiB put: {res.large_drops_in_flight})"
        if k == "inotify-overflow":
            v += f" (overflow reported: {res.overflows_seen})" if not res.inotify_skipped else " (skipped)"
        rows.append((f"fault: {label}", v))
    rows.append(("faults injected", str(sum(res.faults.values()))))
    rows.append(("files", f"{res.files} ({res.bytes / MiB:.0f} MiB)"))
    sn = res.same_name
    rows.append(("same-name files (delete zone)",
                 f"{sn.names} names, {sn.versions_written} versions ({sn.swapped} renamed onto a verified file, "
                 f"{sn.same_size} of the same size, {sn.same_mtime} of the same mtime too)"))
    if f is not None:
        rows += [("lost", str(len(f.lost))), ("duplicated", str(len(f.duplicated))), ("wrong", str(len(f.wrong))),
                 ("stray temporary objects", str(len(f.stray))), ("extra objects", str(len(f.extra))),
                 ("landing files removed unverified", str(len(f.removed_unverified))),
                 ("earlier versions right at name.~k~", f"{f.versions_ok} of {f.versions}"),
                 ("after = move/delete not done", str(len(f.after_pending))),
                 ("after-action leftovers (private names)", str(len(f.leftovers))),
                 ("files in delete/move landing or move_to nobody wrote", str(len(f.unexpected))),
                 ("landing files changed", str(len(f.landing_changed))),
                 ("RQ started registry after drain", str(f.jobs_started)),
                 ("RQ jobs waiting / failed registry", f"{f.jobs_waiting} / {f.jobs_failed}"),
                 ("listed failed at the end", str(len(f.failed_listed))),
                 ("kept versions without ingestd::superseded (info)", str(len(f.versions_unmarked)))]
    rows.append(("files failed for good, in the workers' logs", str(len(res.logged_failures))))
    rows.append(("listed failed at the drain, before retry", str(len(res.failures))))
    rows.append(("failures not explained by an injected error", str(len(res.unexplained_failures))))
    rows.append(("process crashes", str(len(res.crashes))))
    rows.append(("ledger 'queued' counter at the end", str(res.ledger_queued_after)))
    rows.append(("time to drain after the last fault",
                 f"{res.drain_seconds:.1f} s" if res.drain_seconds is not None else "NOT DRAINED"))
    if res.failures:
        rows.append(("time to drain after retry",
                     f"{res.retry_drain_seconds:.1f} s" if res.retry_drain_seconds is not None else "NOT DRAINED"))
    rows.append(("runtime", f"{res.runtime:.0f} s"))
    rows.append(("result", "PASS" if res.ok else "FAIL"))
    w = max(len(a) for a, _ in rows)
    out = [f"fault campaign, seed {res.seed}", "-" * (w + 12)]
    out += [f"{a:<{w}}  {b}" for a, b in rows]
    return "\n".join(out)


def report(res: Result) -> str:
    lines = [table(res)]
    f = res.findings
    if f is not None:
        for p in f.problems():
            lines.append("PROBLEM " + p)
    for z, rel, reason in res.failures[:20]:
        lines.append(f"listed failed: {z}:{rel}: {reason}")
    for z, rel, reason in res.unexplained_failures[:20]:
        lines.append(f"UNEXPLAINED failure: {z}:{rel}: {reason}")
    reasons = Counter(r for _z, _p, r in res.logged_failures)
    for reason, n in reasons.most_common(10):
        lines.append(f"failed for good in the logs, {n}x: {reason}")
    for c in res.crashes:
        lines.append("CRASH " + c)
    for note in res.notes:
        lines.append("note: " + note)
    lines.append(f"logs: {res.run_dir / 'logs'} (Redis: {res.run_dir / 'redis' / 'redis.log'}, "
                 f"iRODS test server: {res.run_dir / 'irods' / 'server.log'})")
    return "\n".join(lines)
