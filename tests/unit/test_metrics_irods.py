"""Issue 15.1: every public function of the catalog adapter is timed by name, in one place, and the calls
that raise are counted by error class (the catalog is the one module that talks to iRODS)."""

from __future__ import annotations

import inspect

import irods.exception as iex
import pytest
from prometheus_client import REGISTRY

from irods_ingestd import metrics_irods
from irods_ingestd.ingest import catalog


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_every_public_catalog_function_is_timed() -> None:
    public = [n for n, f in vars(catalog).items() if inspect.isfunction(f) and not n.startswith("_")
              and getattr(f, "__module__", "") == catalog.__name__]
    assert {"lookup", "rename", "set_metadata", "ensure_collection", "register"} <= set(public)
    for n in public:
        assert getattr(vars(catalog)[n], "__wrapped_api__", None) == n, n


def test_a_call_is_observed_and_an_error_counted_by_class() -> None:
    class Objects:
        def unlink(self, path: str, force: bool) -> None:
            raise iex.CAT_NO_ROWS_FOUND("gone")  # unlink_quiet takes it: no error escapes

        def unregister(self, path: str) -> None:
            raise iex.SYS_NOT_ALLOWED("no")

    class Session:
        data_objects = Objects()

    n0 = sample("irods_ingestd_irods_call_seconds_count", api="unlink_quiet")
    catalog.unlink_quiet(Session(), "/z/a")
    assert sample("irods_ingestd_irods_call_seconds_count", api="unlink_quiet") == n0 + 1
    assert sample("irods_ingestd_irods_call_errors_total", api="unlink_quiet", error="CAT_NO_ROWS_FOUND") == 0
    e0 = sample("irods_ingestd_irods_call_errors_total", api="unregister", error="SYS_NOT_ALLOWED")
    with pytest.raises(iex.SYS_NOT_ALLOWED):
        catalog.unregister(Session(), "/z/a")
    assert sample("irods_ingestd_irods_call_errors_total", api="unregister", error="SYS_NOT_ALLOWED") == e0 + 1


def test_instrument_wraps_once_and_leaves_private_and_imported_names() -> None:
    def public() -> int:
        return 1

    def _private() -> int:
        return 2

    public.__module__ = _private.__module__ = "fake_mod"
    ns = {"__name__": "fake_mod", "public": public, "_private": _private, "imported": inspect.isfunction}
    metrics_irods.instrument(ns)
    wrapped = ns["public"]
    metrics_irods.instrument(ns)
    assert ns["public"] is wrapped and wrapped() == 1 and wrapped.__wrapped_api__ == "public"  # type: ignore
    assert ns["_private"] is _private and ns["imported"] is inspect.isfunction
