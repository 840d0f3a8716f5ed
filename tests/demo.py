"""`make demo`: irods-ingestd on a local default, with everything under ./demo.

Starts a private redis-server; uses the real iRODS that `make irods` (.ci/irods.sh) installed and found
(.irods-test/, or INGESTD_TEST_IRODS_ENV), or else, or with `--standin`, the project's iRODS *test server*
(a protocol-level stand-in for demos and tests, not a server for data anyone keeps); writes a config with
one landing zone (demo/landing → /<zone>/home/<user>/demo), starts the daemon and two workers, drops a few
files in and shows them arriving in iRODS with their checksums and metadata. Then it keeps running so you can
drop your own files into demo/landing; Ctrl-C stops everything. `--once` exits after the check (used
by the test suite).
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.irods_server.harness import IrodsServerProcess
from tests.irods_server.pytest_plugin import RealIrodsServer, real_irods_config
from tests.redis_harness import RedisServerProcess

ROOT = Path(__file__).resolve().parent.parent


def write_config(demo: Path, redis_url: str, env_file: Path, collection: str) -> Path:
    pw = demo / "irods-password"
    cfg = demo / "config.toml"
    cfg.write_text(f"""# written by `make demo`
log_level = "info"

[redis]
url = "{redis_url}"

[irods]
environment_file = "{env_file}"
password_file = "{pw}"

[queue]
name = "irods-ingestd-demo"

[[zone]]
name = "demo"
path = "{demo / 'landing'}"
collection = "{collection}"
mode = "put"
settle = "2s"
rescan = "1m"
""")
    cfg.chmod(0o600)
    return cfg


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default=str(ROOT / "demo"), help="where everything lives (default ./demo)")
    ap.add_argument("--once", action="store_true", help="exit after showing the first files arrive")
    ap.add_argument("--standin", action="store_true",
                    help="use the project's iRODS test server even where a real iRODS was found")
    args = ap.parse_args(argv)
    demo = Path(args.dir).resolve()
    (demo / "landing").mkdir(parents=True, exist_ok=True)
    procs: list[subprocess.Popen] = []
    redis_srv = RedisServerProcess(demo / "redis", persistence=True)
    real = None if args.standin else real_irods_config()
    irods: IrodsServerProcess | RealIrodsServer = \
        RealIrodsServer(*real) if real else IrodsServerProcess(demo / "irods")
    what = f"the real iRODS of {real[0]}" if real else "the iRODS test server (a stand-in: no real iRODS found)"
    try:
        redis_srv.start()
        irods.start()
        print(f"redis-server on {redis_srv.url}; {what} on {irods.host}:{irods.port} "
              f"(zone {irods.zone}, user {irods.user})")
        env_file = irods.write_env_file(demo / "irods_environment.json")
        pw = demo / "irods-password"
        pw.write_text(irods.password + "\n")
        pw.chmod(0o600)
        collection = f"/{irods.zone}/home/{irods.user}/demo"
        cfg = write_config(demo, redis_srv.url, env_file, collection)
        exe = [sys.executable, "-m", "irods_ingestd", "--log-target", "stderr", "-c", str(cfg)]
        log = open(demo / "ingestd.log", "ab")
        subprocess.run(exe + ["check-config"], check=True)
        procs.append(subprocess.Popen(exe + ["run"], stderr=log, cwd=ROOT))
        for i in (1, 2):
            procs.append(subprocess.Popen(exe + ["worker", "--name", f"demo-{i}"], stderr=log, cwd=ROOT))
        print(f"daemon and 2 workers running; their log: {demo / 'ingestd.log'}")
        time.sleep(1.0)
        stamp = time.strftime("%H%M%S")
        names = [f"run-{stamp}/sample{i}.txt" for i in range(3)] + [f"run-{stamp}/reads.fastq"]
        for n in names:
            p = demo / "landing" / n
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes((f"{n}\n" * 1000).encode())
        print(f"dropped {len(names)} files into {demo / 'landing'}; waiting for them in iRODS ...")
        session = irods.session()
        deadline = time.monotonic() + 60
        missing = list(names)
        while missing and time.monotonic() < deadline:
            missing = [n for n in names if not session.data_objects.exists(f"{collection}/{n}")]
            time.sleep(0.5)
        for n in names:
            path = f"{collection}/{n}"
            if n in missing:
                print(f"  MISSING {path}")
                continue
            obj = session.data_objects.get(path)
            avus = {m.name: m.value for m in obj.metadata.items()}
            print(f"  {path}  {obj.size} bytes  {obj.checksum}  source {avus.get('ingestd::source_path')}")
        session.cleanup()
        status = subprocess.run(exe + ["status"], capture_output=True, text=True)
        print(status.stdout, end="")
        if missing:
            print(f"{len(missing)} files did not arrive; see {demo / 'ingestd.log'}", file=sys.stderr)
            return 1
        print(f"Drop more files into {demo / 'landing'}; `{status_command(cfg)}` shows progress. "
              "Ctrl-C stops the demo.")
        if args.once:
            return 0
        signal.pause()
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        irods.stop()
        redis_srv.stop()


def status_command(cfg: Path) -> str:
    """The status command as a user can type it in another terminal (the venv's script, by its path)."""
    script = Path(sys.executable).parent / "irods-ingestd"
    exe = str(script) if script.exists() else f"{sys.executable} -m irods_ingestd"
    return f"{exe} -c {cfg} status"


if __name__ == "__main__":
    sys.exit(main())
