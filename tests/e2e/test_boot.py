"""Smoke test of the e2e plumbing: boot systemd in a container, start Redis, exit with a status."""

from __future__ import annotations

from pathlib import Path

from tests.e2e import nspawn

SCRIPT = r"""
state=$(systemctl is-system-running --wait || true)
echo "system state: $state"
if [ "$state" != running ]; then systemctl --failed --no-pager; exit 10; fi
test "$(cat /proc/1/comm)" = systemd
systemctl start redis-server.service
test "$(redis-cli ping)" = PONG
echo ok > /e2e/out/result
"""


def test_boot_and_redis(e2e_rootfs: Path, run_dir: Path) -> None:
    result = nspawn.boot(e2e_rootfs, SCRIPT, timeout=180, run_dir=run_dir)
    print(f"boot+test+poweroff: {result.seconds:.1f}s")
    assert result.returncode == 0, result.explain()
    assert (result.out / "result").read_text() == "ok\n"
    assert "Started redis-server.service" in result.journal or "redis" in result.journal


def test_failure_propagates_exit_code(e2e_rootfs: Path, run_dir: Path) -> None:
    result = nspawn.boot(e2e_rootfs, "exit 7\n", timeout=120, run_dir=run_dir)
    assert result.returncode == 7, result.explain()
