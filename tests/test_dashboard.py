"""The Grafana dashboard is valid, current, and charts only metrics the services export."""

import json
import re
from pathlib import Path

import yaml

from observability.build_dashboard import DASHBOARD, dashboard
from plumbing.identity import ServiceIdentity
from plumbing.metrics import ServiceMetrics
from rxsm.serve import SERVICES
from schemas.vocabulary import Tool

ROOT = Path(__file__).resolve().parent.parent


def exported_metric_names() -> set[str]:
    metrics = ServiceMetrics(ServiceIdentity("messaging", Tool.SM))
    for counter in (
        metrics.drafts_created,
        metrics.drafts_updated,
        metrics.drafts_deleted,
        metrics.messages_sent,
        metrics.renewals,
        metrics.picker_shown,
        metrics.dead_letters,
    ):
        counter.add(1)
    metrics.draft_latency.record(0.01)
    metrics.send_latency.record(0.01)
    metrics.lag.values[("rxsm-messaging", "t", 0)] = 3
    text = metrics.prometheus_text().decode()
    metrics.shutdown()
    return set(re.findall(r"^(rxsm_[a-z_]+)", text, re.MULTILINE))


def test_the_committed_dashboard_is_the_generated_one() -> None:
    assert json.loads(DASHBOARD.read_text()) == dashboard(), (
        "run python -m observability.build_dashboard"
    )


def test_the_dashboard_is_well_formed_grafana_json() -> None:
    board = json.loads(DASHBOARD.read_text())
    assert board["uid"] and board["title"] and isinstance(board["schemaVersion"], int)
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        assert panel["type"] in {"timeseries", "bargauge", "piechart", "stat", "table"}
        assert set(panel["gridPos"]) == {"x", "y", "w", "h"}
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        assert panel["targets"] and all(t["expr"] and t["refId"] for t in panel["targets"])


def test_every_charted_metric_is_exported() -> None:
    exported = exported_metric_names()
    charted = {
        name
        for panel in dashboard()["panels"]
        for target in panel["targets"]
        for name in re.findall(r"rxsm_[a-z_]+", target["expr"])
    }
    assert charted <= exported, charted - exported


def test_compose_provisions_the_dashboard_and_scrapes_every_service() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert "./observability/grafana/dashboards:/var/lib/grafana/dashboards:ro" in mounts
    scrape = yaml.safe_load((ROOT / "observability/prometheus/prometheus.yml").read_text())
    jobs = {
        job["job_name"]: job["static_configs"][0]["targets"] for job in scrape["scrape_configs"]
    }
    assert jobs == {name: [f"{name}:{service.port}"] for name, service in SERVICES.items()}


def test_the_funnel_reads_the_journey_ledger_only() -> None:
    """The care-team service counts its own outcomes too; the funnel must not add them twice."""
    funnel = [panel for panel in dashboard()["panels"] if "rxsm_renewals_total" in str(panel)]
    assert funnel
    for panel in funnel:
        for target in panel["targets"]:
            assert target["expr"].count("rxsm_renewals_total{") == target["expr"].count(
                'job="renewal"'
            )
