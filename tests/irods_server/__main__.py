"""Command line entry point: ``python -m tests.irods_server --port N --vault DIR --catalog FILE``."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

from .server import DEFAULT_VERSION, IrodsTestServer


def parse_user(spec: str, first: bool) -> tuple[str, str, str]:
    parts = spec.split(":")
    if len(parts) < 2:
        raise argparse.ArgumentTypeError(f"--user wants NAME:PASSWORD[:TYPE], got {spec!r}")
    utype = parts[2] if len(parts) > 2 else ("rodsadmin" if first else "rodsuser")
    return parts[0], parts[1], utype


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.irods_server", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=1247, help="0 = pick a free port (printed when listening)")
    p.add_argument("--vault", required=True)
    p.add_argument("--catalog", required=True, help="SQLite file (kept across restarts)")
    p.add_argument("--zone", default="tempZone")
    p.add_argument("--user", action="append", default=[], help="NAME:PASSWORD[:TYPE]; first is the admin")
    p.add_argument("--version", default=DEFAULT_VERSION, help="reported iRODS version (4.2.11: legacy auth)")
    p.add_argument("--resource", default="demoResc")
    p.add_argument("--cs-neg-policy", default="CS_NEG_DONT_CARE", choices=["CS_NEG_DONT_CARE", "CS_NEG_REFUSE"])
    ctl = p.add_mutually_exclusive_group()
    ctl.add_argument("--control-port", type=int, default=None, help="TCP control port (0 = pick one)")
    ctl.add_argument("--control-socket", default=None, help="unix socket path for the control channel")
    p.add_argument("--log-level", default="WARNING")
    p.add_argument("--exit-with-parent", action="store_true", help="stop when the parent process exits")
    args = p.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    users = [parse_user(u, i == 0) for i, u in enumerate(args.user)] or [("rods", "rods", "rodsadmin")]
    server = IrodsTestServer(
        args.host, args.port, args.vault, args.catalog, zone=args.zone, users=users, version=args.version,
        resource=args.resource, cs_neg_policy=args.cs_neg_policy, control_port=args.control_port,
        control_socket=args.control_socket,
    )  # fmt: skip
    if args.exit_with_parent:
        server.parent_pid = os.getppid()
    server.bind()

    def on_signal(signum: int, _frame: object) -> None:
        server.stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if server.control_socket:
        control = f"control-socket {server.control_socket}"
    else:
        control = f"control-port {server.control_port}"
    print(
        f"irods test server listening on {server.host}:{server.port} {control} zone {server.zone} "
        f"version {server.version}",
        flush=True,
    )
    server.serve_forever()
    print("irods test server stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
