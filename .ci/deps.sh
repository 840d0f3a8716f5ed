#!/bin/bash
# Install what the tests need beyond the Python venv. Idempotent; `make deps` (so .ci/run) calls it once, as root.
#   redis-server        RQ's broker for integration tests (and its redis-cli)
#   systemd-container   systemd-nspawn for the end-to-end tests (a real systemd as PID 1)
#   debootstrap         builds the Debian 12 rootfs those tests boot (cached outside the checkout)
#   libsystemd-dev, pkg-config   let pip build systemd-python (the venv's [systemd] extra: journald/sd_notify)
# systemd itself (systemd-analyze, for tests/integration/test_systemd_units.py) comes with
# systemd-container.
set -euo pipefail

apt_packages=(redis-server systemd-container debootstrap libsystemd-dev pkg-config)

missing=()
for p in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "ci-deps: need root to apt-get install ${missing[*]}" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
