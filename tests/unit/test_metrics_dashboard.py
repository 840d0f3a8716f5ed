"""Issue 15.1: the Grafana dashboard is valid JSON and every metric its panels query is one the code exports
(the worker's and daemon's families, the daemon's snapshot collector, the reachability probe)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

from prometheus_client import REGISTRY

from irods_ingestd import metrics, metrics_daemon, metrics_probe, notify  # noqa: F401 (notify: its counter)
from irods_ingestd.config_metrics import MetricsConfig, split_address

DASHBOARD = Path(__file__).resolve().parents[2] / "packaging" / "grafana" / "irods-ingestd.json"


def exported() -> set[str]:
    fams = list(REGISTRY.collect())
    dm = metrics_daemon.DaemonMetrics(SimpleNamespace())  # type: ignore[arg-type]
    dm._snap = {"zones": {"z": {"state": "watching", "walking": False, "settling": 0,
                                "ledger": {"queued": 0, "done": 1, "failed": 0}}},
                "ready": 0, "jobs_waiting": 0, "backlog_full": False, "overflows": 0, "skipped": 0}
    fams += list(dm.collect())
    probe = metrics_probe.Reachability(SimpleNamespace())  # type: ignore[arg-type]
    probe._at = 1e18  # a fresh (cached) probe: nothing is reached for
    fams += list(probe.collect())
    names = set()
    for f in fams:
        names |= {f.name + s for s in ("", "_total", "_bucket", "_count", "_sum")}
    return names


def test_the_dashboard_is_valid_json_and_queries_only_exported_metrics() -> None:
    dash = json.loads(DASHBOARD.read_text())
    assert dash["title"] == "irods-ingestd" and dash["panels"]
    used = set()
    for p in dash["panels"]:
        assert p["title"] and p["targets"], p
        for t in p["targets"]:
            found = re.findall(r"irods_ingestd_\w+", t["expr"])
            assert found, t
            used |= set(found)
    names = exported()
    assert used <= names, sorted(used - names)
    # and the dashboard shows each kind the issue asks for
    for m in ("irods_ingestd_files_total", "irods_ingestd_bytes_total", "irods_ingestd_settling_files",
              "irods_ingestd_queued_files", "irods_ingestd_walk_seconds_sum",
              "irods_ingestd_ingest_latency_seconds_bucket",
              "irods_ingestd_irods_call_seconds_bucket", "irods_ingestd_irods_call_errors_total",
              "irods_ingestd_redis_up", "irods_ingestd_irods_up"):
        assert m in used, m


def test_a_dashboard_naming_a_metric_nobody_exports_would_fail() -> None:
    assert "irods_ingestd_files_ingested_total" not in exported()


def test_listen_addresses() -> None:
    assert split_address("127.0.0.1:9108") == ("127.0.0.1", 9108)
    assert split_address("[::1]:9108") == ("::1", 9108)
    assert split_address(":9108") == ("0.0.0.0", 9108)
    for bad in ("9108", "host:", "h:70000", "h:p"):
        try:
            split_address(bad)
        except ValueError:
            continue
        raise AssertionError(bad)
    assert MetricsConfig().listen == ""  # off by default


def test_worker_address_adds_the_instance_number(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    cfg = SimpleNamespace(metrics=MetricsConfig(worker_listen="127.0.0.1:9110"))
    monkeypatch.delenv(metrics.INSTANCE_ENV, raising=False)
    assert metrics.worker_address(cfg) == "127.0.0.1:9110"  # type: ignore[arg-type]
    monkeypatch.setenv(metrics.INSTANCE_ENV, "3")
    assert metrics.worker_address(cfg) == "127.0.0.1:9113"  # type: ignore[arg-type]
    monkeypatch.setenv(metrics.INSTANCE_ENV, "gpu")
    assert metrics.worker_address(cfg) is None  # type: ignore[arg-type]


def test_bad_metrics_config_names_the_field() -> None:
    from irods_ingestd import config_metrics
    from irods_ingestd.config_parse import Checker

    c = Checker()
    cfg = config_metrics.check(c, {"metrics": {"listen": "localhost", "worker_listen": 9110, "port": 1}})
    assert cfg == MetricsConfig()
    assert len(c.problems) == 3, c.problems
    assert any(p.startswith("[metrics].listen: 'localhost' is not host:port") for p in c.problems)
    assert any(p.startswith("[metrics].worker_listen: expected str") for p in c.problems)
    assert any("unknown key 'port'" in p for p in c.problems)
