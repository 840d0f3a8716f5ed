"""The daemon (`irods-ingestd run`) with a counter of the kernel events its watchers read, for
`fanotify_burst.py`:

    python -m bench.watch_counter CONFIG STATS

Every 0.2 s STATS gets a JSON line {"events": n, "cpu": s}: events handed from the watcher's reader thread
to the main loop (every inotify or fanotify event read, the foreign ones of a filesystem mark included)
and the process's CPU seconds (user + system) so far. Stops on SIGTERM as the daemon does.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import threading
from collections.abc import Iterable
from typing import Any

from irods_ingestd import cli
from irods_ingestd.watch.api import Inbox

_count = [0]
_orig_put_many = Inbox.put_many


def _put_many(self: Inbox, items: Iterable[Any]) -> None:
    items = list(items)
    _count[0] += len(items)
    _orig_put_many(self, items)


def _report(path: str) -> None:
    while True:
        ru = resource.getrusage(resource.RUSAGE_SELF)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(json.dumps({"events": _count[0], "cpu": ru.ru_utime + ru.ru_stime}) + "\n")
        os.replace(tmp, path)
        threading.Event().wait(0.2)


def main(argv: list[str]) -> int:
    Inbox.put_many = _put_many  # type: ignore[method-assign]
    threading.Thread(target=_report, args=(argv[1],), daemon=True).start()
    return cli.main(["--log-target", "stderr", "-c", argv[0], "run"])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
