#!/bin/bash
# write-config.sh ZONE...: /etc/irods-ingestd/config.toml watching /srv/landing/<zone> for each zone,
# ingesting into /tempZone/home/rods/<zone>.
set -euo pipefail
cfg=/etc/irods-ingestd/config.toml
{
    printf 'log_level = "info"\n\n[redis]\nurl = "redis://127.0.0.1:6379/0"\n\n'
    printf '[irods]\nenvironment_file = "/etc/irods-ingestd/irods_environment.json"\n\n'
    printf '[queue]\nbatch_files = 1\n'
    for z in "$@"; do
        printf '\n[[zone]]\nname = "%s"\npath = "/srv/landing/%s"\ncollection = "/tempZone/home/rods/%s"\n' "$z" "$z" "$z"
        printf 'mode = "put"\nsettle = "1s"\n'
    done
} > "$cfg.new"
chgrp irods-ingestd "$cfg.new" 2>/dev/null || true
chmod 0640 "$cfg.new"
mv "$cfg.new" "$cfg"
