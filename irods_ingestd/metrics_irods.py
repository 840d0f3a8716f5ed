"""Timing of the iRODS catalog adapter: every public function of :mod:`irods_ingestd.ingest.catalog` is
wrapped once, at the end of that module, so a function added there later is timed too.

`irods_ingestd_irods_call_seconds{api}` observes each call (api = the adapter function's name; a function
that calls another one of the adapter is timed as itself and the other separately), and
`irods_ingestd_irods_call_errors_total{api,error}` counts the calls that raised (error = the exception's
class name, e.g. CAT_NO_ROWS_FOUND or NetworkException).
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable
from typing import Any

from .metrics import IRODS_CALLS, IRODS_ERRORS


def timed(api: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    hist = IRODS_CALLS.labels(api)

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        except BaseException as e:
            IRODS_ERRORS.labels(api, type(e).__name__).inc()
            raise
        finally:
            hist.observe(time.perf_counter() - t0)

    call.__wrapped_api__ = api  # type: ignore[attr-defined]
    return call


def instrument(namespace: dict[str, Any]) -> None:
    """Wrap the public functions defined in the module whose globals are `namespace` (once)."""
    module = namespace["__name__"]
    for name, obj in list(namespace.items()):
        if name.startswith("_") or not inspect.isfunction(obj) or obj.__module__ != module:
            continue
        if not hasattr(obj, "__wrapped_api__"):
            namespace[name] = timed(name, obj)
