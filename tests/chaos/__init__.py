"""The fault campaign: irods-ingestd under kill -9s, restarts and outages, then every file checked.

`python -m bench.chaos` (`make chaos`) runs it in full; `tests/integration/test_chaos.py` runs the short
version. It lives with the tests' harnesses (the iRODS test server, the Redis harness) so that the tests and
the benchmarks share them through tests/ and never import each other's modules the other way round.
"""
