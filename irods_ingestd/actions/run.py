"""`irods-ingestd run`: the daemon (what the systemd unit starts)."""

from __future__ import annotations

import argparse
import logging

from ..config import load
from ..daemon import Daemon

log = logging.getLogger(__name__)


def run(args: argparse.Namespace) -> int:
    cfg = load(args.config, check_paths=False)  # a missing zone directory is waited for, not fatal
    logging.getLogger().setLevel(cfg.log_level.upper())
    return Daemon(cfg).run()
