"""The `irods-ingestd` command: run, worker, check-config, scan, plan, status, retry.

Global options (`-c/--config`, `--log-level`, `--log-target`) are accepted before or after the command.
Exit codes: 0 success; 1 the command ran and found failures (failed files listed by `status`, problems
found by `check-config`, conflicts or an incomplete look by `plan`); 2 bad usage or a bad configuration;
3 `scan` gave up on a full backlog; 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from . import __version__
from .config import ConfigError

log = logging.getLogger("irods_ingestd")

COMMANDS = {
    "run": "run the daemon: watch the zones and queue settled files",
    "worker": "run an RQ worker that ingests queued files into iRODS",
    "check-config": "validate the configuration and check that Redis and iRODS answer",
    "scan": "walk the zones once now and queue what is new (for onboarding a large tree)",
    "plan": "a dry run: what would be ingested where, what is settling, excluded or a conflict (writes nothing)",
    "status": "show per zone: watching or walking, settling, queued, ingested, failed",
    "retry": "queue the failed files again",
}


EPILOG = ("Global options go before or after the command. Exit codes: 0 success, 1 failures found (failed "
          "files, config problems), 2 bad usage or configuration, 3 scan gave up on a full backlog.")


def _globals(p: argparse.ArgumentParser, defaults: bool) -> None:
    """The global options; on a command's parser without defaults (argparse.SUPPRESS), so one given before
    the command is not reset by the command's parser."""
    def d(value: object) -> object:
        return value if defaults else argparse.SUPPRESS

    p.add_argument("-c", "--config", default=d(None), help="config file (default: $IRODS_INGESTD_CONFIG or "
                   "/etc/irods-ingestd/config.toml)")
    p.add_argument("--log-level", default=d(None), help="override the config's log_level")
    p.add_argument("--log-target", default=d("auto"), choices=("auto", "journal", "stderr"),
                   help="where records go: the journal when under systemd (auto), or stderr")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="irods-ingestd", description="Ingest complete files from landing "
                                "zones into iRODS.", epilog=EPILOG)
    p.add_argument("--version", action="version", version=f"irods-ingestd {__version__}")
    _globals(p, defaults=True)
    common = argparse.ArgumentParser(add_help=False)
    _globals(common, defaults=False)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_ in COMMANDS.items():
        sp = sub.add_parser(name, help=help_, description=help_, parents=[common], epilog=EPILOG)
        if name == "worker":
            sp.add_argument("--queue", help="queue name (default: [queue].name)")
            sp.add_argument("--burst", action="store_true", help="exit when the queue is empty")
            sp.add_argument("--name", help="worker name (default: host and pid)")
            sp.add_argument("--role", choices=("ingest", "walk", "all"), default="ingest",
                            help="ingest: the ingest queue (default); walk: the walk jobs' queue ([walk].queue); "
                                 "all: walk jobs first, then ingest jobs")
            sp.add_argument("--hostname", help="the host name the worker reports (default: "
                            "$IRODS_INGESTD_HOSTNAME, else the machine's)")
        if name == "check-config":
            sp.add_argument("--offline", action="store_true", help="only validate the file")
        if name in ("scan", "retry", "plan"):
            sp.add_argument("--zone", action="append", help="only this zone (repeatable)")
        if name == "scan":
            sp.add_argument("--backlog-wait", type=float, default=60.0, metavar="SECONDS",
                            help="with the backlog full, exit (code 3) after this long without progress (60)")
            sp.add_argument("--jobs", action="store_true",
                            help="list the zones' directories in walk jobs run by walk workers (worker --role "
                                 "walk), if any listen; else walk here")
        if name == "plan":
            sp.add_argument("--json", action="store_true", help="machine-readable output (fields in the README)")
            sp.epilog = ("Writes nothing to Redis or iRODS. Exit codes: 0 nothing would fail, 1 the plan lists "
                         "failures (conflicts, files the worker would fail, failed files) or is incomplete "
                         "(Redis or iRODS did not answer, a zone directory is missing), 2 bad usage or "
                         "configuration.")
        if name == "status":
            sp.add_argument("--json", action="store_true", help="machine-readable output")
            sp.add_argument("--recount", action="store_true",
                            help="recount the queued counters from the ledger first (repairs a drifted count)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from .logsetup import setup_logging

    setup_logging(args.log_level or "info", args.log_target)
    module = importlib.import_module(f".actions.{args.command.replace('-', '_')}", __package__)
    try:
        if args.log_level:
            logging.getLogger().setLevel(args.log_level.upper())
        return int(module.run(args))
    except ConfigError as e:
        log.error("configuration problem:\n%s", e)
        sys.stderr.flush()
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
