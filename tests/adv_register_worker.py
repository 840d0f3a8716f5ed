"""A worker for tests/integration/test_adv_register.py that SIGKILLs itself right after a bulk register call
(the rows are registered, no AVU call made, nothing recorded in the ledger), when ``ADVREG_KILL_AFTER_BULK=1``;
otherwise the worker of :mod:`tests.adv_faults_harness` (its kill points and short lock TTL apply too).

Run as ``python -m tests.adv_register_worker CONFIG NAME``.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from typing import Any

from tests import adv_faults_harness as h


def main(argv: list[str]) -> int:
    if os.environ.get("ADVREG_KILL_AFTER_BULK"):
        from irods_ingestd.ingest import bulk

        real = bulk._send

        def send(*a: Any, **kw: Any) -> None:
            real(*a, **kw)
            logging.getLogger("advreg").warning("ADVREG: killing myself after a bulk register call")
            os.kill(os.getpid(), signal.SIGKILL)

        bulk._send = send
    return h.main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
