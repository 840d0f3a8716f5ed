#!/usr/bin/env bash
# A real iRODS 5.0.2 for the tests (the judge), installed and started if it can be had, as root:
#   1. ../shared/irods/install-irods.sh beside the checkout (this project's machines and CI), else
#   2. the iRODS consortium's own Debian 12 packages, when their repository answers, else
#   3. none: says so, and the tests run against the project's iRODS test server (tests/irods_server/).
# On success it writes .irods-test/irods_environment.json and .irods-test/password, which the test
# fixtures (tests/irods_server/pytest_plugin.py) pick up. INGESTD_TEST_IRODS=standin skips all this.
set -uo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=$repo/.irods-test
shared=$repo/../shared/irods/install-irods.sh
IRODS_VERSION=5.0.2
rm -rf "$out"
say() { echo "irods.sh: $*"; }

if [ "${INGESTD_TEST_IRODS:-}" = standin ]; then
    say "INGESTD_TEST_IRODS=standin: the tests use the iRODS test server"; exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    say "not root: cannot install iRODS; the tests use the iRODS test server"; exit 0
fi

answers() { (exec 3<>/dev/tcp/127.0.0.1/1247) 2>/dev/null; }

if [ -f "$shared" ]; then
    bash "$shared" || { say "install-irods.sh failed (see /var/lib/irods-install/logs)"; exit 1; }
elif command -v irodsServer >/dev/null 2>&1 || [ -x /usr/sbin/irodsServer ]; then
    answers || say "an iRODS is installed but does not answer on 127.0.0.1:1247: start it, then run again"
else
    # the consortium's repository (https, signed); nothing is fetched unless it answers within 10 s
    repo_url=https://packages.irods.org/apt
    if curl -fsS --max-time 10 -o /tmp/irods-signing-key.asc https://packages.irods.org/irods-signing-key.asc; then
        say "installing iRODS $IRODS_VERSION from the iRODS consortium's packages"
        install -d /etc/apt/keyrings && gpg --dearmor < /tmp/irods-signing-key.asc > /etc/apt/keyrings/renci-irods.gpg
        echo "deb [arch=amd64 signed-by=/etc/apt/keyrings/renci-irods.gpg] $repo_url/ bookworm main" \
            > /etc/apt/sources.list.d/renci-irods.list
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq && apt-get install -y -q postgresql \
            "irods-server=$IRODS_VERSION-0~bookworm" "irods-database-plugin-postgres=$IRODS_VERSION-0~bookworm" \
            "irods-runtime=$IRODS_VERSION-0~bookworm" "irods-icommands=$IRODS_VERSION-0~bookworm" \
            || { say "apt-get install of the iRODS packages failed"; exit 1; }
        say "packages installed; configure them once with /var/lib/irods/scripts/setup_irods.py" \
            "(zone tempZone, user rods, password rods, port 1247), start the server, then run this again"
    else
        say "no ../shared/irods and the iRODS consortium's packages cannot be reached:" \
            "the tests use the iRODS test server (tests/irods_server/) instead of a real iRODS"
        exit 0
    fi
fi

if ! answers; then
    say "no iRODS answers on 127.0.0.1:1247: the tests use the iRODS test server"; exit 0
fi
mkdir -p "$out"
cat > "$out/irods_environment.json" <<JSON
{"irods_host": "127.0.0.1", "irods_port": 1247, "irods_user_name": "rods", "irods_zone_name": "tempZone"}
JSON
printf '%s\n' "${INGESTD_TEST_IRODS_PASSWORD:-rods}" > "$out/password"
chmod 600 "$out/password"
say "the tests use the real iRODS on 127.0.0.1:1247 ($out)"
