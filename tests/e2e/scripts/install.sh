#!/bin/bash
# Install irods-ingestd inside the e2e container the way packaging/systemd/README.md tells an
# administrator to: venv in /opt/irods-ingestd (its dependencies are already in the cached rootfs;
# the project's wheel comes from /e2e/wheels), symlink to /usr/bin, units, sysusers, tmpfiles.
# Then the test's own configuration: zones under /srv/landing, Redis on the port the host chose
# ($E2E_REDIS_PORT), the iRODS server the host described in /e2e (irods_environment.json,
# irods-password, e2e.env; see tests/e2e/conftest.py). Runs as root in the booted container; the
# checkout is at /src (read-only).
set -euo pipefail
: "${E2E_REDIS_PORT:?}" "${E2E_COLLECTION:?}"

venv=/opt/irods-ingestd
"$venv/bin/pip" install -q --no-index --no-deps --force-reinstall /e2e/wheels/irods_ingestd-*.whl
ln -sf "$venv/bin/irods-ingestd" /usr/bin/irods-ingestd

units=/src/packaging/systemd
install -m 0644 "$units/irods-ingestd.service" "$units/irods-ingestd-worker@.service" \
    "$units/irods-ingestd.target" /etc/systemd/system/
install -D -m 0644 "$units/sysusers.d/irods-ingestd.conf" /etc/sysusers.d/irods-ingestd.conf
install -D -m 0644 "$units/tmpfiles.d/irods-ingestd.conf" /etc/tmpfiles.d/irods-ingestd.conf
systemd-sysusers /etc/sysusers.d/irods-ingestd.conf
systemd-tmpfiles --create /etc/tmpfiles.d/irods-ingestd.conf

# Landing zones: read-write for the services through the drop-in (zones.conf.example).
mkdir -p /srv/landing/z1 /srv/landing/z2 /srv/landing/z3
for unit in irods-ingestd.service irods-ingestd-worker@.service; do
    mkdir -p "/etc/systemd/system/$unit.d"
    printf '[Service]\nReadWritePaths=/srv/landing\n' > "/etc/systemd/system/$unit.d/zones.conf"
done
# Test hooks for the daemon only: the hang file (watchdog test) and a short watchdog so the test
# does not wait the shipped 30 s.
mkdir -p /etc/systemd/system/irods-ingestd.service.d
cat > /etc/systemd/system/irods-ingestd.service.d/e2e.conf <<'UNIT'
[Service]
Environment=INGESTD_TEST_HANG_FILE=/run/ingestd-e2e-hang
WatchdogSec=6
RestartSec=2
UNIT

# Redis on the host's port: the container may share the host's network (a real iRODS on the host), so
# never Redis's default 6379. The rootfs is a volatile overlay: this edit is gone after the boot.
sed -i -E "s/^port .*/port $E2E_REDIS_PORT/" /etc/redis/redis.conf
grep -q "^port $E2E_REDIS_PORT\$" /etc/redis/redis.conf

# iRODS client environment and the password as a systemd credential.
install -m 0640 /e2e/irods_environment.json /etc/irods-ingestd/irods_environment.json
install -m 0600 /e2e/irods-password /etc/irods-ingestd/irods-password
/src/tests/e2e/scripts/write-config.sh z1
systemd-tmpfiles --create /etc/tmpfiles.d/irods-ingestd.conf
chgrp irods-ingestd /etc/irods-ingestd/irods_environment.json
chmod 0640 /etc/irods-ingestd/irods_environment.json
systemctl daemon-reload
