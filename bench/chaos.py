"""`python -m bench.chaos` (`make chaos`): the fault campaign of tests/chaos/ in full (see its package)."""

from __future__ import annotations

import sys

from tests.chaos.campaign import main

if __name__ == "__main__":
    sys.exit(main())
