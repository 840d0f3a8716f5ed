#!/bin/bash
# write-config.sh ZONE...: /etc/irods-ingestd/config.toml watching /srv/landing/<zone> for each zone,
# ingesting into $E2E_COLLECTION/<zone> (the run's collection), with Redis on $E2E_REDIS_PORT.
set -euo pipefail
: "${E2E_REDIS_PORT:?}" "${E2E_COLLECTION:?}"
cfg=/etc/irods-ingestd/config.toml
{
    printf 'log_level = "info"\n\n[redis]\nurl = "redis://127.0.0.1:%s/0"\n\n' "$E2E_REDIS_PORT"
    printf '[irods]\nenvironment_file = "/etc/irods-ingestd/irods_environment.json"\n\n'
    printf '[queue]\nbatch_files = 1\n'
    for z in "$@"; do
        printf '\n[[zone]]\nname = "%s"\npath = "/srv/landing/%s"\ncollection = "%s/%s"\n' "$z" "$z" "$E2E_COLLECTION" "$z"
        printf 'mode = "put"\nsettle = "1s"\n'
    done
} > "$cfg.new"
chgrp irods-ingestd "$cfg.new" 2>/dev/null || true
chmod 0640 "$cfg.new"
mv "$cfg.new" "$cfg"
